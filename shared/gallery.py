"""The opt-in public gallery (#10): a copy of a finished portrait, under a random id unrelated to its job, with
only coarse facts (style, family, day). Nothing here names the job, the photo or the person.

Redis holds one hash per id, `portraits:gallery:<gid>`; a sorted set `portraits:gallery:ready` of the copies
waiting for the next release, scored by the day they became ready; and the sorted set `portraits:gallery` of
listed ids (newest day first when listed). An id goes through four states (`State`, the hash's `state` field):

- **pending** — reserved by the gateway at upload (the hash holds only the withdraw token's SHA-256), so the
  owner can withdraw before the portrait exists; expires with the job record if it is never published.
- **ready** — the worker stored the copy under its staging key and filled the hash in atomically, only if the
  reservation is still pending (a withdraw that came first wins: the worker then erases its copy). Unlisted.
- **listed** — the janitor's release (services/janitor/gallery_release.py) copied it to its public key and listed
  it with every other copy that became ready before the same UTC midnight, at once.
- **withdrawn/expired** — the hash and the set entries are gone; a tombstone `portraits:gallery:gone:<gid>` keeps
  the token hash for a day, so the token holder's repeated DELETE gets an honest 404 while anyone else still
  gets the same 403 as for an id that never existed.

Everything a reader can see of a listed entry carries its release day and nothing finer (#25: a publish time to
the microsecond in the cursor, or to the second in Last-Modified, matched the entry to its job's `done` event):
the `day` field, the order (the day, then a hash of the random id), the cursor (day and id), the object's
Last-Modified (the release), its removal and its URL's expiry (both the release day's start plus the TTL, shared
by the whole day's batch). Nothing stored keeps a finer time either: the worker schedules and files the staged
copy under its day.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import redis

from shared.redis_replies import hash_text, members, optional_text, scored_members

_ID_BYTES = 24  # as shared/ids.py: 192 random bits, drawn independently of the job id
_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{32}")
_DAY_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
_TOKEN_BYTES = 32
DAY_SECONDS = 86_400
TOMBSTONE_SECONDS = 86_400  # long enough for a client to retry a DELETE whose answer it lost
# The hash outlives its object's deadline by this much at most: if the janitor's removal of the index entry never
# happens, Redis still forgets the entry (and its token hash) by itself.
EXPIRY_SLACK_SECONDS = 86_400
# A listed entry's score: its day's number times this, plus 32 bits of its id's hash (exact in a double).
_DAY_SCALE = 2**32


class State(StrEnum):
    PENDING = "pending"
    READY = "ready"
    LISTED = "listed"


class ReleaseOutcome(StrEnum):
    LISTED = "listed"
    ALREADY_LISTED = "already_listed"  # another janitor replica's release came first
    GONE = "gone"  # withdrawn (or expired) while its copy was being released


def new_gallery_id() -> str:
    return secrets.token_urlsafe(_ID_BYTES)


def is_gallery_id(value: str) -> bool:
    # fullmatch: `re.match` with `$` lets a trailing newline through (#25).
    return _ID_PATTERN.fullmatch(value) is not None


def object_key(gallery_id: str) -> str:
    """The public copy's key, the one a listed entry's presigned URL names."""
    return f"gallery/{gallery_id}.jpg"


def staging_key(gallery_id: str) -> str:
    """The copy's key until its release: never presigned. Under `gallery/` so reconciliation finds it, and
    `job_id_of` reads the gallery id out of it as out of the public key."""
    return f"gallery/{gallery_id}.staged.jpg"


def is_staging_key(key: str) -> bool:
    return key.endswith(".staged.jpg")


def copy_keys(gallery_id: str) -> tuple[str, str]:
    """Every key a copy of this entry may have: staged, public."""
    return staging_key(gallery_id), object_key(gallery_id)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time comparison of the presented token's hash with the stored one."""
    return hmac.compare_digest(token_hash(token).encode(), stored_hash.encode())


def day_of(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d")


def day_start(epoch_seconds: float) -> int:
    """The UTC midnight that began this moment's day."""
    return int(epoch_seconds // DAY_SECONDS) * DAY_SECONDS


def start_of(day: str) -> int:
    """The UTC midnight that begins `day` (YYYY-MM-DD); ValueError for anything else."""
    if _DAY_PATTERN.fullmatch(day) is None:
        raise ValueError("not a day")
    return int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())


def removal_deadline(day: str, ttl_seconds: float) -> float:
    """When a copy listed on `day` leaves the gallery: the same moment for the whole day's release."""
    return start_of(day) + ttl_seconds


def listing_score(day: str, gallery_id: str) -> float:
    """Newest day first; within a day, an order set by the random id alone, so it says nothing about time."""
    tiebreak = int.from_bytes(hashlib.sha256(gallery_id.encode()).digest()[:4], "big")
    return float(start_of(day) // DAY_SECONDS * _DAY_SCALE + tiebreak)


def _day_of_score(score: float) -> str:
    return day_of(int(score) // _DAY_SCALE * DAY_SECONDS)


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
    """A listed entry: what the gallery shows, and the token hash that withdraws it."""

    id: str
    style: str
    family: str
    day: str  # YYYY-MM-DD, UTC: the day it was released, the only time it carries (#25)
    token_hash: str

    @property
    def object_key(self) -> str:
        return object_key(self.id)


@dataclass(frozen=True)
class Pending:
    id: str
    token_hash: str


@dataclass(frozen=True)
class Ready:
    """Copied by the worker under its staging key; listed at the next release."""

    id: str
    token_hash: str


@dataclass(frozen=True)
class Gone:
    """Withdrawn or expired within the last `TOMBSTONE_SECONDS`."""

    id: str
    token_hash: str


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: the last shown entry's day and id, both shown with it anyway (#25)."""

    day: str
    id: str

    @property
    def score(self) -> float:
        return listing_score(self.day, self.id)

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.day}:{self.id}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        """Raises ValueError for anything this module did not write."""
        try:
            # validate: without it, characters outside the alphabet are dropped, and junk passes for a cursor.
            padded = raw + "=" * (-len(raw) % 4)
            text = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise ValueError("bad cursor") from exc
        day, _, gallery_id = text.partition(":")
        start_of(day)  # ValueError too
        if not is_gallery_id(gallery_id):
            raise ValueError("bad cursor")
        return cls(day, gallery_id)


@dataclass(frozen=True)
class GalleryPage:
    entries: tuple[GalleryEntry, ...]
    next_cursor: Cursor | None


# KEYS[1] entry hash, KEYS[2] ready set; ARGV[1] gid, ARGV[2] the ready day's start, ARGV[3] expire-at, ARGV[4]
# style, ARGV[5] family. Only a pending reservation becomes ready: returns 1, or 0 when it was withdrawn first.
_READY = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'ready', 'style', ARGV[4], 'family', ARGV[5])
redis.call('EXPIREAT', KEYS[1], tonumber(ARGV[3]))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# KEYS[1] listed set, KEYS[2] ready set, KEYS[3..] entry hashes; ARGV[1] day, ARGV[2] expire-at, then one
# (gid, score) pair per hash. Lists every one still ready, in one call: a reader sees the whole day arrive at once.
_LIST = """
local outcomes = {}
for i = 3, #KEYS do
  local gid, score = ARGV[2 * i - 3], ARGV[2 * i - 2]
  local state = redis.call('HGET', KEYS[i], 'state')
  if state == 'ready' then
    redis.call('HSET', KEYS[i], 'state', 'listed', 'day', ARGV[1])
    redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[2]))
    redis.call('ZADD', KEYS[1], score, gid)
    redis.call('ZREM', KEYS[2], gid)
    outcomes[#outcomes + 1] = 'listed'
  elseif state == 'listed' then
    outcomes[#outcomes + 1] = 'already_listed'
  else
    redis.call('ZREM', KEYS[2], gid)
    outcomes[#outcomes + 1] = 'gone'
  end
end
return outcomes
"""

# KEYS[1] entry hash, KEYS[2] listed set, KEYS[3] tombstone, KEYS[4] ready set; ARGV[1] gid, ARGV[2] tombstone
# TTL, ARGV[3] the state the entry must be in ('' for any). Returns 1 when this call removed the entry.
_REMOVE = """
local hash = redis.call('HGET', KEYS[1], 'token_hash')
if not hash then
  if ARGV[3] == '' then
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('ZREM', KEYS[4], ARGV[1])
  end
  return 0
end
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'state') ~= ARGV[3] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('SET', KEYS[3], hash, 'EX', tonumber(ARGV[2]))
return 1
"""


class GalleryIndex:
    SET_KEY = "portraits:gallery"
    READY_KEY = "portraits:gallery:ready"  # not 32 characters: never an entry's key
    ENTRY_PREFIX = "portraits:gallery:"  # + gid (32 characters, so never a prefix below)
    GONE_PREFIX = "portraits:gallery:gone:"

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._ready = client.register_script(_READY)
        self._list = client.register_script(_LIST)
        self._remove = client.register_script(_REMOVE)

    def _entry(self, gallery_id: str) -> str:
        return self.ENTRY_PREFIX + gallery_id

    def _gone(self, gallery_id: str) -> str:
        return self.GONE_PREFIX + gallery_id

    # --- the gateway, at upload ---

    def reserve(self, grant: GalleryGrant, ttl_seconds: int) -> None:
        """A pending entry holding only the token hash: lets the owner withdraw before the copy exists."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._entry(grant.id), mapping={"state": State.PENDING.value, "token_hash": grant.token_hash})
            pipe.expire(self._entry(grant.id), ttl_seconds)
            pipe.execute()

    # --- the worker ---

    def is_pending(self, gallery_id: str) -> bool:
        return self._redis.hget(self._entry(gallery_id), "state") == State.PENDING.value.encode()

    def mark_ready(self, gallery_id: str, style: str, family: str, day: int, ttl_seconds: int) -> bool:
        """The staged copy of a portrait finished on the day starting at `day` waits for the next release, if its
        reservation is still pending; False when the owner withdrew first."""
        expire_at = day + DAY_SECONDS + ttl_seconds + EXPIRY_SLACK_SECONDS  # from the day: no finer time kept
        return bool(
            self._ready(
                keys=[self._entry(gallery_id), self.READY_KEY],
                args=[gallery_id, day, expire_at, style, family],
            )
        )

    # --- the janitor's release ---

    def ready_before(self, moment: float) -> list[str]:
        """Ids of the copies that became ready on a day before `moment`'s (UTC)."""
        below = f"({day_start(moment)}"
        return [member.decode() for member in members(self._redis.zrangebyscore(self.READY_KEY, "-inf", below))]

    def list_released(self, gallery_ids: list[str], day: str, ttl_seconds: int) -> dict[str, ReleaseOutcome]:
        """List, in one atomic call, every one of these ids still ready, as released on `day`."""
        if not gallery_ids:
            return {}
        expire_at = int(removal_deadline(day, ttl_seconds)) + EXPIRY_SLACK_SECONDS
        pairs = [item for gid in gallery_ids for item in (gid, repr(listing_score(day, gid)))]
        outcomes = self._list(
            keys=[self.SET_KEY, self.READY_KEY, *map(self._entry, gallery_ids)], args=[day, expire_at, *pairs]
        )
        return {gid: ReleaseOutcome(raw.decode()) for gid, raw in zip(gallery_ids, outcomes, strict=True)}

    # --- reads ---

    def lookup(self, gallery_id: str) -> GalleryEntry | Ready | Pending | Gone | None:
        raw = self._redis.hgetall(self._entry(gallery_id))
        if raw:
            values = hash_text(raw)
            state = values.get("state")
            if state == State.PENDING:
                return Pending(gallery_id, values["token_hash"])
            if state == State.READY:
                return Ready(gallery_id, values["token_hash"])
            return _entry_of(gallery_id, values)
        gone = optional_text(self._redis.get(self._gone(gallery_id)))
        return Gone(gallery_id, gone) if gone is not None else None

    def page(self, cursor: Cursor | None, limit: int) -> GalleryPage:
        """Newest day first, `limit` entries after `cursor` (ties on the score broken by id, descending)."""
        cursor_score = None if cursor is None else cursor.score
        top: float | str = "+inf" if cursor_score is None else repr(cursor_score)
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
                if cursor is not None and score == cursor_score and gallery_id >= cursor.id:
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
        next_cursor = Cursor(_day_of_score(shown[-1][1]), shown[-1][0]) if len(picked) > limit else None
        return GalleryPage(tuple(entries), next_cursor)

    def ids(self) -> list[str]:
        """The listed ids, in the gallery's order."""
        return [member.decode() for member in members(self._redis.zrevrange(self.SET_KEY, 0, -1))]

    # --- removal: the owner's withdraw, the janitor's expiry, a cancelled publication ---

    def remove(self, gallery_id: str, *, only_pending: bool = False, only_ready: bool = False) -> bool:
        """Forget the entry, leaving a tombstone with its token hash; True for the one caller that removed it.
        `only_pending`/`only_ready`: only if it is in that state (a cancelled reservation; a staged copy that
        expired unreleased, which must not take a listed entry with it)."""
        state = State.PENDING.value if only_pending else State.READY.value if only_ready else ""
        return bool(
            self._remove(
                keys=[self._entry(gallery_id), self.SET_KEY, self._gone(gallery_id), self.READY_KEY],
                args=[gallery_id, TOMBSTONE_SECONDS, state],
            )
        )


def _entry_of(gallery_id: str, values: dict[str, str]) -> GalleryEntry:
    return GalleryEntry(
        id=gallery_id,
        style=values["style"],
        family=values["family"],
        day=values["day"],
        token_hash=values["token_hash"],
    )
