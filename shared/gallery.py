"""The opt-in public gallery (#10): a copy of a finished portrait, under a random id unrelated to its job, with
only coarse facts (style, family, day). Nothing here names the job, the photo or the person.

Redis holds one hash per id, `portraits:gallery:<gid>`, and a sorted set `portraits:gallery` of published ids by
publish time (newest first when listed). An id goes through three states:

- **pending** — reserved by the gateway at upload (the hash holds only the withdraw token's SHA-256), so the
  owner can withdraw before the portrait exists; expires with the job record if it is never published.
- **published** — the worker stored the copy and filled the hash in atomically, only if the reservation is still
  pending (a withdraw that came first wins: the worker then erases its copy).
- **withdrawn/expired** — the hash and the set entry are gone; a tombstone `portraits:gallery:gone:<gid>` keeps
  the token hash for a day, so the token holder's repeated DELETE gets an honest 404 while anyone else still
  gets the same 403 as for an id that never existed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from shared.redis_replies import hash_text, members, optional_text, scored_members

_ID_BYTES = 24  # as shared/ids.py: 192 random bits, drawn independently of the job id
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32}$")
_TOKEN_BYTES = 32
TOMBSTONE_SECONDS = 86_400  # long enough for a client to retry a DELETE whose answer it lost
# The hash outlives its object's deadline by this much at most: if the janitor's removal of the index entry never
# happens, Redis still forgets the entry (and its token hash) by itself.
EXPIRY_SLACK_SECONDS = 86_400


def new_gallery_id() -> str:
    return secrets.token_urlsafe(_ID_BYTES)


def is_gallery_id(value: str) -> bool:
    return bool(_ID_PATTERN.match(value))


def object_key(gallery_id: str) -> str:
    return f"gallery/{gallery_id}.jpg"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time comparison of the presented token's hash with the stored one."""
    return hmac.compare_digest(token_hash(token).encode(), stored_hash.encode())


def day_of(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class GalleryGrant:
    """What an upload with `share=true` is given: the id and the one-time withdraw token (only its hash is kept)."""

    id: str
    token: str

    @property
    def token_hash(self) -> str:
        return token_hash(self.token)

    @classmethod
    def new(cls) -> GalleryGrant:
        return cls(new_gallery_id(), secrets.token_urlsafe(_TOKEN_BYTES))


@dataclass(frozen=True)
class GalleryEntry:
    id: str
    style: str
    family: str
    day: str  # YYYY-MM-DD, UTC: coarser than the publish time on purpose
    object_key: str
    token_hash: str
    published_at: float  # the sort key (kept in the index, never shown)


@dataclass(frozen=True)
class Pending:
    id: str
    token_hash: str


@dataclass(frozen=True)
class Gone:
    """Withdrawn or expired within the last `TOMBSTONE_SECONDS`."""

    id: str
    token_hash: str


@dataclass(frozen=True)
class Cursor:
    score: float
    id: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.score!r}:{self.id}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        """Raises ValueError for anything this module did not write."""
        try:
            text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise ValueError("bad cursor") from exc
        score_text, _, gallery_id = text.partition(":")
        score = float(score_text)  # ValueError too
        if not math.isfinite(score) or not is_gallery_id(gallery_id):
            raise ValueError("bad cursor")
        return cls(score, gallery_id)


@dataclass(frozen=True)
class GalleryPage:
    entries: tuple[GalleryEntry, ...]
    next_cursor: Cursor | None


# KEYS[1] entry hash, KEYS[2] sorted set; ARGV[1] gid, ARGV[2] published_at, ARGV[3] ttl, then field/value
# pairs. Publishes only a pending reservation: returns 1, or 0 when it was withdrawn (or expired) first.
_PUBLISH = """
if redis.call('HGET', KEYS[1], 'pending') ~= '1' then return 0 end
redis.call('HDEL', KEYS[1], 'pending')
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# KEYS[1] entry hash, KEYS[2] sorted set, KEYS[3] tombstone; ARGV[1] gid, ARGV[2] tombstone TTL,
# ARGV[3] '1' to remove only a pending reservation. Returns 1 when this call removed the entry.
_REMOVE = """
local hash = redis.call('HGET', KEYS[1], 'token_hash')
if not hash then
  if ARGV[3] ~= '1' then redis.call('ZREM', KEYS[2], ARGV[1]) end
  return 0
end
if ARGV[3] == '1' and redis.call('HGET', KEYS[1], 'pending') ~= '1' then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], hash, 'EX', tonumber(ARGV[2]))
return 1
"""


class GalleryIndex:
    SET_KEY = "portraits:gallery"
    ENTRY_PREFIX = "portraits:gallery:"  # + gid (32 characters, so never a prefix below)
    GONE_PREFIX = "portraits:gallery:gone:"

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._publish = client.register_script(_PUBLISH)
        self._remove = client.register_script(_REMOVE)

    def _entry(self, gallery_id: str) -> str:
        return self.ENTRY_PREFIX + gallery_id

    def _gone(self, gallery_id: str) -> str:
        return self.GONE_PREFIX + gallery_id

    # --- the gateway, at upload ---

    def reserve(self, grant: GalleryGrant, ttl_seconds: int) -> None:
        """A pending entry holding only the token hash: lets the owner withdraw before the copy exists."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._entry(grant.id), mapping={"pending": "1", "token_hash": grant.token_hash})
            pipe.expire(self._entry(grant.id), ttl_seconds)
            pipe.execute()

    # --- the worker ---

    def is_pending(self, gallery_id: str) -> bool:
        return self._redis.hget(self._entry(gallery_id), "pending") == b"1"

    def publish(self, entry: GalleryEntry, ttl_seconds: int) -> bool:
        """List the entry, if its reservation is still pending; False when the owner withdrew first."""
        fields = {
            "style": entry.style,
            "family": entry.family,
            "day": entry.day,
            "object_key": entry.object_key,
            "token_hash": entry.token_hash,
            "published_at": repr(entry.published_at),
        }
        pairs = [item for pair in fields.items() for item in pair]
        return bool(
            self._publish(
                keys=[self._entry(entry.id), self.SET_KEY],
                args=[entry.id, repr(entry.published_at), ttl_seconds + EXPIRY_SLACK_SECONDS, *pairs],
            )
        )

    # --- reads ---

    def lookup(self, gallery_id: str) -> GalleryEntry | Pending | Gone | None:
        raw = self._redis.hgetall(self._entry(gallery_id))
        if raw:
            values = hash_text(raw)
            if values.get("pending") == "1":
                return Pending(gallery_id, values["token_hash"])
            return _entry_of(gallery_id, values)
        gone = optional_text(self._redis.get(self._gone(gallery_id)))
        return Gone(gallery_id, gone) if gone is not None else None

    def page(self, cursor: Cursor | None, limit: int) -> GalleryPage:
        """Newest first, `limit` entries after `cursor` (ties on the publish time broken by id, descending)."""
        top: float | str = "+inf" if cursor is None else repr(cursor.score)
        picked: list[tuple[str, float]] = []
        offset = 0
        while len(picked) <= limit:
            batch = scored_members(
                self._redis.zrevrangebyscore(self.SET_KEY, top, "-inf", start=offset, num=limit + 1, withscores=True)
            )
            if not batch:
                break
            offset += len(batch)
            for member, score in batch:
                gallery_id = member.decode()
                if cursor is not None and score == cursor.score and gallery_id >= cursor.id:
                    continue  # at or before the cursor
                picked.append((gallery_id, score))
        shown = picked[:limit]
        with self._redis.pipeline(transaction=False) as pipe:
            for gallery_id, _ in shown:
                pipe.hgetall(self._entry(gallery_id))
            raws = pipe.execute()
        entries = []
        for (gallery_id, _), raw in zip(shown, raws):
            if raw:  # an entry whose hash expired on its own is skipped (and its set member dropped)
                entries.append(_entry_of(gallery_id, hash_text(raw)))
            else:
                self._redis.zrem(self.SET_KEY, gallery_id)
        next_cursor = Cursor(shown[-1][1], shown[-1][0]) if len(picked) > limit else None
        return GalleryPage(tuple(entries), next_cursor)

    def ids(self) -> list[str]:
        return [member.decode() for member in members(self._redis.zrevrange(self.SET_KEY, 0, -1))]

    # --- removal: the owner's withdraw, the janitor's expiry, a cancelled publication ---

    def remove(self, gallery_id: str, *, only_pending: bool = False) -> bool:
        """Forget the entry, leaving a tombstone with its token hash; True for the one caller that removed it."""
        return bool(
            self._remove(
                keys=[self._entry(gallery_id), self.SET_KEY, self._gone(gallery_id)],
                args=[gallery_id, TOMBSTONE_SECONDS, "1" if only_pending else "0"],
            )
        )


def _entry_of(gallery_id: str, values: dict[str, str]) -> GalleryEntry:
    return GalleryEntry(
        id=gallery_id,
        style=values["style"],
        family=values["family"],
        day=values["day"],
        object_key=values["object_key"],
        token_hash=values["token_hash"],
        published_at=float(values["published_at"]),
    )
