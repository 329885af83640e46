"""Per-job source keys in Redis (the keys shared/crypto.py seals sources with), and the source-ready signal.

A published key also says that its source is stored: the gateway may send a job before its source's put has
finished, marks the source *expected* meanwhile, and publishes the key once the put succeeded; a worker that
arrives first waits for it. The whole handshake, told once: services/gateway/submission.py.
"""

from __future__ import annotations

from typing import Any

import redis

from shared.jobs import lua_names, lua_values
from shared.redis_replies import blob
from shared.settings import Settings
from shared.storage import longest_call_seconds

# One script rather than MULTI, so that a WAIT can follow it on the same connection in the same round trip
# (`SourceKeys.publish`); MULTI would take the WAIT into the transaction, where it cannot block.
_PUBLISH_KEYS = ("source", "expected")
_PUBLISH_ARGS = ("blob", "ttl")
_PUBLISH = (
    lua_names("key", "KEYS", _PUBLISH_KEYS)
    + lua_names("argv", "ARGV", _PUBLISH_ARGS)
    + """
redis.call('DEL', key.source)
redis.call('RPUSH', key.source, argv.blob)
redis.call('EXPIRE', key.source, argv.ttl)
redis.call('DEL', key.expected)
return 1
"""
)


def source_expected_seconds(settings: Settings) -> float:
    """How long the gateway marks a source *expected*: its longest put, then the key's publication (two Redis
    calls). Only a gateway dying mid-upload makes a worker wait that long; the janitor's resend of lost messages
    waits it out too (services/janitor/lost_messages.py)."""
    return longest_call_seconds(settings.s3_budget(for_="gateway")) + 2 * settings.redis_timeout


class KeyGone(LookupError):
    """The source's key expired or was deleted: the source is shredded."""


class SourceNotStored(LookupError):
    """The source was expected but its key was never published: the upload was abandoned, or its gateway died
    before the write finished. Nothing readable was stored; the deletion schedule removes whatever landed."""


class SourceKeys:
    """Per-job source keys in Redis, expiring after `ttl_seconds` (the source's maximum age).

    A key is kept as a one-element list, so that a worker can block on it (BLMOVE of the list onto itself
    reads without removing) until the gateway publishes it; see the module's docstring."""

    KEY_PREFIX = "portraits:source-key:"
    EXPECTED_PREFIX = "portraits:source-expected:"
    ABANDONED_PREFIX = "portraits:source-abandoned:"

    def __init__(self, client: redis.Redis, ttl_seconds: int, wait_step_seconds: float = 0.5) -> None:
        self._redis = client
        self._ttl = ttl_seconds
        # One blocking read at most this long, so it stays within the client's socket timeout; between two, the
        # expected mark is looked at again.
        self._wait_step = wait_step_seconds

    @classmethod
    def key_of(cls, job_id: str) -> str:
        """The Redis key of the job's source key (a one-element list), for a script of another store that reads it."""
        return cls.KEY_PREFIX + job_id

    def expect(self, pipe: redis.client.Pipeline, job_id: str, seconds: float) -> None:
        """Queue in `pipe` the mark "this job's source is being stored", for at most `seconds`."""
        pipe.set(self.EXPECTED_PREFIX + job_id, b"1", px=max(1, round(seconds * 1000)))

    def publish(self, job_id: str, key: bytes, *, replicas: int = 0, wait_ms: int = 0) -> int | None:
        """The source is stored: make its key readable (ending the expected mark) and wake a waiting worker.

        With `replicas` > 0, then wait up to `wait_ms` for that many replicas to have every write made so far
        (Redis WAIT, #24) and return how many did (None without a wait). WAIT counts from the last write of its
        own connection, so it follows the publication on the same one, in one round trip: the replication
        stream is in order, and the job's record, its deletion entry and its broker message were all written
        before it."""
        keys = lua_values(_PUBLISH_KEYS, source=self.KEY_PREFIX + job_id, expected=self.EXPECTED_PREFIX + job_id)
        with self._redis.pipeline(transaction=False) as pipe:
            # EVAL with the script's text, not a registered script: in a pipeline redis-py sends SCRIPT EXISTS
            # before every execute, a second round trip on every upload. The script is a few hundred bytes.
            pipe.eval(_PUBLISH, len(keys), *keys, *lua_values(_PUBLISH_ARGS, blob=key, ttl=self._ttl))
            if replicas > 0:
                pipe.execute_command("WAIT", replicas, wait_ms)  # type: ignore[no-untyped-call]
            replies = pipe.execute()
        return int(replies[1]) if replicas > 0 else None

    def store(self, job_id: str, key: bytes) -> None:
        """A key for a source already stored (publish without a prior `expect`)."""
        self.publish(job_id, key)

    def load(self, job_id: str) -> bytes:
        """The key; waits while its source is expected. Raises `KeyGone` when there is none and none is expected
        (expired or shredded), `SourceNotStored` when one was expected and never came."""
        key, expected = self._look(job_id)
        if key is not None:
            return key
        if not expected:
            raise KeyGone(job_id)
        while True:
            # Onto itself: the one element is read, not removed. Redis takes fractional timeouts since 6.0; redis-py
            # types the argument as int.
            step: Any = self._wait_step
            waited = self._redis.blmove(self.KEY_PREFIX + job_id, self.KEY_PREFIX + job_id, step, "LEFT", "LEFT")
            if waited is not None:
                return blob(waited)
            key, expected = self._look(job_id)
            if key is not None:
                return key
            if not expected:
                raise SourceNotStored(job_id)

    def published(self, job_id: str) -> bool:
        """Whether the key is there now (its source stored and not yet shredded); never waits."""
        return bool(self._redis.exists(self.KEY_PREFIX + job_id))

    def delete(self, job_id: str) -> None:
        """Shred the key; a source still expected is expected no more (a waiting worker stops at its next look)."""
        self._redis.delete(self.KEY_PREFIX + job_id, self.EXPECTED_PREFIX + job_id)

    def abandon(self, job_id: str) -> None:
        """The gateway gave up storing this source (its put failed or timed out): shred any key, end the expected
        mark, and say so for the source's maximum age. A worker that looks only now then leaves the source to its
        deletion deadline (`SourceNotStored`) instead of erasing it at once, while the put given up on may still
        land: erased first and written after, it was an orphan nothing had scheduled (`make chaos`, #23)."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.KEY_PREFIX + job_id, self.EXPECTED_PREFIX + job_id)
            pipe.set(self.ABANDONED_PREFIX + job_id, b"1", ex=self._ttl)
            pipe.execute()

    def _look(self, job_id: str) -> tuple[bytes | None, bool]:
        """(the key or None, whether the source may still be stored); `SourceNotStored` for an abandoned one."""
        with self._redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.lindex(self.KEY_PREFIX + job_id, 0)
            pipe.exists(self.EXPECTED_PREFIX + job_id)
            pipe.exists(self.ABANDONED_PREFIX + job_id)
            key, expected, abandoned = pipe.execute()
        if key is None and abandoned:
            raise SourceNotStored(job_id)
        return (blob(key) if key is not None else None), bool(expected)
