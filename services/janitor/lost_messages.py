"""Queued jobs whose Celery message is gone, sent again (#24: nothing lost when a write is lost).

The gateway writes a job's record, its source's deletion entry and its place in the queue index in one MULTI, and
the job's Celery message separately, on kombu's connection (services/gateway/submission.py). Redis replicates
asynchronously: a primary that fails over takes its last writes with it, and a record can survive while its
message does not. A worker's consumer that dies between popping a message (BRPOP) and recording it in kombu's
`unacked` hash loses one too. Nothing would paint such a job: it would wait, `queued`, until the janitor fails it
`source_expired` at its photo's maximum age.

Where a message can be (kombu's Redis transport, shared/queue.py): waiting, as a JSON envelope in the Redis list
named after the queue (one more list per priority step; Celery sends ours at priority 0); reserved by a worker
(acks late, prefetch 1), as `[envelope, exchange, routing key]` in the hash `unacked`, until the task ends. The
envelope's `headers.id` is the task id, which is the job id. A job that has left `queued` (started, batched along
with another job's render, failed, erased) has left the queue index too, in the same step (shared/jobs.py).

`LostMessages.resend(now)`, once per janitor sweep:

1. Gate, one round trip of counters: nothing to do while no queued job is older than the grace period (the normal
   case: jobs are taken within seconds). Otherwise a full scan is due when fewer messages exist than jobs that
   need one (queued jobs plus leased renders, against the lists plus `unacked`), when the last scan left
   suspects to confirm, or every grace period: the counts alone can hide a loss behind messages no job needs
   (a deleted job's, a duplicate's).
2. Scan, one MULTI (a consistent snapshot): the queued jobs older than the grace period, every waiting and reserved
   message's task id. A queued job without a message is a suspect; its record is checked (an id whose record
   expired is pruned from the index).
3. A suspect still without a message at a scan half a sweep or more later (`confirm`) is sent again with
   `enqueue_render`,
   logged with its age and counted in `portraits_janitor_resent_total`. Two sightings, not one: a message a
   worker has just popped is in neither place for the millisecond before kombu records it, and a job caught
   there must not be sent twice. At most `janitor_batch_size` a scan, the longest-waiting first; none at all
   when not one message in the broker could be read (a changed format must not resend every queued job).

A job is sent again at most once per grace period, whichever replica sees it (a marker with that expiry, taken
with SET NX): a resend lost in its turn is retried, a backlog is not flooded. No lock: every replica may run the
gate, the last scan's time is shared so the periodic scan runs about once per period in all, and the marker
makes two replicas confirming the same suspect send it once. A copy too many is harmless anyway: the job's
state and lease let only one delivery start it (shared/job_start.py).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis
from kombu.transport.redis import Channel as KombuRedisChannel
from redis.typing import EncodableT, FieldT

from services.janitor import metrics
from shared.jobs import JobState, JobStore
from shared.leases import JobLeases
from shared.logging import get_logger
from shared.redis_replies import blob, members, optional_text, text
from shared.settings import Settings
from shared.source_keys import source_expected_seconds

log = get_logger("portraits.janitor")

# kombu's names for its Redis keys (no `global_keyprefix`: make_celery sets none).
UNACKED_KEY: str = KombuRedisChannel.unacked_key
PRIORITY_SEPARATOR: str = KombuRedisChannel.sep
PRIORITY_STEPS: list[int] = list(KombuRedisChannel.priority_steps)

SUSPECTS_KEY = "portraits:janitor:unsent"  # hash: job id → when a scan first found it queued without a message
SCANNED_KEY = "portraits:janitor:unsent-scanned"  # when the last full scan ran (epoch s)
RESENT_PREFIX = "portraits:janitor:resent:"  # + job id: sent again less than a grace period ago


def resend_grace_seconds(settings: Settings) -> float:
    """How long after its `created_at` a queued job may still be waiting for the gateway to send its message.

    The gateway reads `created_at` before two Redis calls (the gallery reservation and the MULTI that records the
    job), one Redis timeout each; then it sends the message beside the source's put and answers (or undoes the
    upload) only once both are over and the key is published: the source's expected window
    (`source_expected_seconds`: the put's whole retry budget plus two Redis calls). The send itself is bounded by
    far less (two attempts of a connect and a write, services/gateway/context.py). 24 s with the defaults: well
    inside the photo's 120 s, and no upload still in progress is taken for a lost one.
    """
    return 2 * settings.redis_timeout + source_expected_seconds(settings)


@dataclass(frozen=True)
class Counts:
    """The gate's one round trip."""

    old: int  # queued jobs older than the grace period
    queued: int  # queued jobs
    leased: int  # renders holding a lease: each has its message reserved or, batched along, still waiting
    messages: int  # waiting (every priority's list) and reserved (`unacked`)
    suspects: int
    last_scan: float | None

    @property
    def short(self) -> bool:
        """Fewer messages than jobs that need one: some job certainly lacks its message."""
        return self.queued + self.leased > self.messages


class LostMessages:
    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        enqueue: Callable[[str], None],
        *,
        grace_seconds: float | None = None,
        confirm_seconds: float | None = None,
    ) -> None:
        self._redis = client
        self._enqueue = enqueue
        self.grace = resend_grace_seconds(settings) if grace_seconds is None else grace_seconds
        # Half a sweep: two scans of one replica are a sweep apart, two replicas' scans a moment apart are not;
        # either is far longer than a message spends between a worker's BRPOP and kombu's `unacked`.
        self.confirm = settings.janitor_interval_seconds / 2 if confirm_seconds is None else confirm_seconds
        self._limit = settings.janitor_batch_size  # jobs sent again per scan, the longest-waiting first
        self._lists = [
            settings.queue_name if step == 0 else f"{settings.queue_name}{PRIORITY_SEPARATOR}{step}"
            for step in PRIORITY_STEPS
        ]
        self._expiry = max(1, math.ceil(self.grace))  # seconds, for SET EX

    def resend(self, now: float) -> list[str]:
        """Send again the queued jobs whose message is lost (module docstring); returns their ids."""
        counts = self._count(now)
        if counts.old == 0:
            if counts.suspects:
                self._redis.delete(SUSPECTS_KEY)  # every suspect left the queue: started, failed or erased
            return []
        periodic = counts.last_scan is None or now - counts.last_scan >= self.grace
        if not (counts.suspects or counts.short or periodic):
            return []
        return self._scan(now)

    # --- the gate ---

    def _count(self, now: float) -> Counts:
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcount(JobStore.QUEUE_KEY, "-inf", now - self.grace)
            pipe.zcard(JobStore.QUEUE_KEY)
            pipe.zcard(JobLeases.KEYS.deadlines)
            for name in self._lists:
                pipe.llen(name)
            pipe.hlen(UNACKED_KEY)
            pipe.hlen(SUSPECTS_KEY)
            pipe.get(SCANNED_KEY)
            old, queued, leased, *sizes, suspects, scanned = pipe.execute()
        last = optional_text(scanned)
        return Counts(
            old=int(old),
            queued=int(queued),
            leased=int(leased),
            messages=sum(int(size) for size in sizes),
            suspects=int(suspects),
            last_scan=float(last) if last is not None else None,
        )

    # --- the scan ---

    def _scan(self, now: float) -> list[str]:
        started = time.perf_counter()
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrangebyscore(JobStore.QUEUE_KEY, "-inf", now - self.grace)
            for name in self._lists:
                pipe.lrange(name, 0, -1)
            pipe.hvals(UNACKED_KEY)
            pipe.hgetall(SUSPECTS_KEY)
            old, *waiting, reserved, raw_suspects = pipe.execute()
        sent = set(_task_ids(envelope for page in waiting for envelope in page))
        sent.update(_task_ids(_reserved_envelopes(reserved)))
        if not sent and (reserved or any(waiting)):
            # Messages, and not one this code can read: kombu's format changed, not every message lost. Sending
            # every queued job again, once per grace period, would flood the queue; someone must look.
            count = sum(len(page) for page in waiting) + len(reserved)
            log.error("lost-message scan cannot read the broker's messages; nothing sent again", messages=count)
            return []
        unsent = [job_id for job_id in map(text, members(old)) if job_id not in sent]
        missing, stale = self._still_queued(unsent)
        suspects = {text(job_id): float(text(seen)) for job_id, seen in raw_suspects.items()}
        confirmed = [job_id for job_id in missing if now - suspects.get(job_id, now) >= self.confirm]
        resent = [job_id for job_id in confirmed[: self._limit] if self._send(job_id, now - missing[job_id])]
        with self._redis.pipeline(transaction=True) as pipe:
            if stale:
                pipe.zrem(JobStore.QUEUE_KEY, *stale)
            pipe.delete(SUSPECTS_KEY)
            still: dict[FieldT, EncodableT] = {
                job_id: suspects.get(job_id, now) for job_id in missing if job_id not in resent
            }
            if still:
                pipe.hset(SUSPECTS_KEY, mapping=still)
                pipe.expire(SUSPECTS_KEY, 2 * self._expiry)
            pipe.set(SCANNED_KEY, repr(now), ex=2 * self._expiry)
            pipe.execute()
        log.debug(
            "lost-message scan",
            old=len(old),
            messages=len(sent),
            suspects=len(still),
            resent=len(resent),
            pruned=len(stale),
            seconds=round(time.perf_counter() - started, 4),
        )
        return resent

    def _still_queued(self, job_ids: list[str]) -> tuple[dict[str, float], list[str]]:
        """Of these ids: the jobs still queued (with their `created_at`, oldest first), and the ids whose record is
        gone."""
        if not job_ids:
            return {}, []
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(JobStore.KEY_PREFIX + job_id, ["state", "created_at"])
            records = pipe.execute()
        queued: dict[str, float] = {}
        stale: list[str] = []
        for job_id, (state, created_at) in zip(job_ids, records):
            if state is None:
                stale.append(job_id)  # expired or erased without leaving the index
            elif json.loads(state) == JobState.QUEUED.value:
                queued[job_id] = float(json.loads(created_at)) if created_at is not None else 0.0
        return dict(sorted(queued.items(), key=lambda item: item[1])), stale

    def _send(self, job_id: str, age: float) -> bool:
        if not self._redis.set(RESENT_PREFIX + job_id, "1", nx=True, ex=self._expiry):
            return False  # sent again less than a grace period ago, by this replica or another
        try:
            self._enqueue(job_id)
        except Exception:
            self._redis.delete(RESENT_PREFIX + job_id)  # not sent: the next sweep may try again
            raise
        metrics.RESENT.inc()
        log.warning(
            "job sent again: its message was neither queued nor reserved by a worker", job_id=job_id, age=round(age, 1)
        )
        return True


def _reserved_envelopes(values: Iterable[object]) -> Iterable[object]:
    """The envelopes in `unacked`'s values (`[envelope, exchange, routing key]`, JSON)."""
    for value in values:
        try:
            entry = json.loads(blob(value))
        except ValueError:
            continue
        if isinstance(entry, list) and entry:
            yield entry[0]


def _task_ids(envelopes: Iterable[object]) -> Iterable[str]:
    """The task ids of kombu envelopes, given as JSON text or already parsed; ones that are not an envelope are
    skipped (no worker could run them either, so their job is rightly sent again)."""
    for envelope in envelopes:
        if isinstance(envelope, bytes):
            try:
                envelope = json.loads(envelope)
            except ValueError:
                continue
        headers = envelope.get("headers") if isinstance(envelope, dict) else None
        task_id = headers.get("id") if isinstance(headers, dict) else None
        if isinstance(task_id, str):
            yield task_id
