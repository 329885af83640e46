"""A Redis failover loses the last writes (#24): a job left `queued` without its message is sent again, and a
source left without its deletion entry is still erased within its maximum age. Against real Redis and SeaweedFS,
with messages sent and reserved through Celery's and kombu's own code, so the janitor reads their real format."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from celery import Celery
from kombu.message import Message

from services.janitor import metrics
from services.janitor.lost_messages import (
    RESENT_PREFIX,
    SUSPECTS_KEY,
    UNACKED_KEY,
    LostMessages,
    resend_grace_seconds,
)
from services.janitor.sweeper import Janitor
from shared.audit import AuditLog, Deleter, ObjectKind
from shared.deletion import DeletionSchedule, Eraser
from shared.ids import new_job_id
from shared.job_start import JobStarter, NotStarted, Started
from shared.jobs import Job, JobState, JobStore
from shared.leases import JobLeases
from shared.queue import enqueue_render, make_celery
from shared.settings import Settings
from shared.source_keys import SourceKeys
from shared.storage import ObjectStore, source_key
from tests.support.service import Backends

# Buckets of this module's own: the reconciliation below lists whole buckets.
pytestmark = pytest.mark.backends(
    sources_bucket="lost-sources", results_bucket="lost-results", source_max_age_seconds=10, result_ttl_seconds=60
)


@pytest.fixture
def celery(backends: Backends) -> Iterator[Celery]:
    app = make_celery(backends.settings)
    yield app
    app.close()


class Sender:
    """The janitor's `enqueue`: Celery's real send path, remembering what it sent."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app, self.settings, self.sent = app, settings, []

    def __call__(self, job_id: str) -> None:
        enqueue_render(self.app, self.settings, job_id)
        self.sent.append(job_id)


@pytest.fixture
def sender(celery: Celery, backends: Backends) -> Sender:
    return Sender(celery, backends.settings)


@pytest.fixture
def lost(backends: Backends, sender: Sender) -> LostMessages:
    return LostMessages(redis.Redis.from_url(backends.settings.redis_url), backends.settings, sender)


def queued_job(backends: Backends, created_at: float) -> str:
    """A job recorded as the gateway's MULTI records it (record, stream, queue index), with no message sent."""
    job_id = new_job_id()
    backends.jobs.create(Job(id=job_id, state=JobState.QUEUED, created_at=created_at))
    return job_id


def waiting_ids(backends: Backends) -> list[str]:
    """The task ids of the messages waiting in the queue's list, oldest first."""
    raw = backends.redis.lrange(backends.settings.queue_name, 0, -1)
    return [json.loads(envelope)["headers"]["id"] for envelope in reversed(raw)]


@contextmanager
def reserved_by_a_worker(app: Celery, settings: Settings) -> Iterator[Message]:
    """A consumer as a worker's (acks late, prefetch 1) that took the next message and has not acknowledged it:
    kombu keeps it in `unacked` meanwhile (and puts it back in the queue when the connection closes)."""
    with app.connection_for_read() as connection:
        taken: list[Message] = []
        queue = app.amqp.queues[settings.queue_name]
        with connection.Consumer(
            queue, callbacks=[lambda _body, message: taken.append(message)], accept=["json"]
        ) as consumer:
            consumer.qos(prefetch_count=1)
            connection.drain_events(timeout=5)
            yield taken[0]


def sweeps(lost: LostMessages, start: float, count: int) -> list[str]:
    """`count` calls a sweep apart, from `start`; every id they sent."""
    sent: list[str] = []
    for n in range(count):
        sent += lost.resend(start + n * lost.confirm)
    return sent


def test_the_grace_period_outlasts_the_gateways_upload(backends):
    settings = backends.settings
    # The source's expected window (its put's whole budget plus two Redis calls) and the two Redis calls before it.
    assert resend_grace_seconds(settings) > settings.gateway_s3_max_attempts * 2 * settings.gateway_s3_timeout
    assert resend_grace_seconds(Settings()) == 24.0  # the defaults: 22 s expected window + 2 × 1 s
    assert resend_grace_seconds(Settings()) < Settings().source_max_age_seconds / 4


def test_a_queued_job_without_its_message_is_sent_again_once(backends, lost, sender):
    now = time.time()
    job_id = queued_job(backends, now - lost.grace - 1)
    before = metrics.RESENT._value.get()
    assert lost.resend(now) == []  # first seen without a message: a suspect, not yet sent
    assert backends.redis.hexists(SUSPECTS_KEY, job_id)
    assert lost.resend(now + lost.confirm) == [job_id]  # still without one a sweep later
    assert waiting_ids(backends) == [job_id]  # a real message, whose headers.id is the job's id
    assert metrics.RESENT._value.get() == before + 1
    assert sweeps(lost, now + 2 * lost.confirm, 3) == [] and sender.sent == [job_id]
    assert lost.resend(now + lost.confirm + lost.grace) == []  # the periodic scan finds its message
    assert not backends.redis.hexists(SUSPECTS_KEY, job_id)
    assert backends.jobs.get(job_id).state is JobState.QUEUED


def test_a_resend_lost_in_its_turn_is_retried_once_per_grace_period(backends, lost, sender):
    now = time.time()
    job_id = queued_job(backends, now - lost.grace - 1)
    assert sweeps(lost, now, 2) == [job_id]
    backends.redis.delete(backends.settings.queue_name)  # lost again
    assert sweeps(lost, now + 2 * lost.confirm, 3) == []  # sent less than a grace period ago
    backends.redis.delete(RESENT_PREFIX + job_id)  # as its expiry, a grace period after the resend, does
    assert lost.resend(now + 5 * lost.confirm) == [job_id]
    assert sender.sent == [job_id, job_id] and waiting_ids(backends) == [job_id]


def test_a_second_replica_scanning_a_moment_later_does_not_confirm_a_suspect(backends, lost, sender):
    other = LostMessages(redis.Redis.from_url(backends.settings.redis_url), backends.settings, sender)
    now = time.time()
    job_id = queued_job(backends, now - lost.grace - 1)
    assert lost.resend(now) == []
    assert other.resend(now + 0.01) == []  # both saw it without a message, but not a sweep apart
    assert other.resend(now + lost.confirm) == [job_id]
    assert lost.resend(now + 2 * lost.confirm) == [] and sender.sent == [job_id]


def test_messages_it_cannot_read_make_it_send_nothing(backends, lost, sender):
    # A kombu whose envelope no longer has `headers.id` where this code looks: every queued job would look lost.
    now = time.time()
    queued_job(backends, now - lost.grace - 1)
    backends.redis.lpush(backends.settings.queue_name, b"not json", json.dumps({"headers": {}}))
    assert sweeps(lost, now, 3) == [] and sender.sent == []


def test_a_job_whose_message_waits_in_the_queue_is_not_sent_again(backends, lost, celery, sender):
    now = time.time()
    job_id = queued_job(backends, now - lost.grace - 1)
    enqueue_render(celery, backends.settings, job_id)
    assert sweeps(lost, now, 3) == [] and sender.sent == []
    assert lost.resend(now + lost.grace + lost.confirm) == []  # the periodic scan again
    assert not backends.redis.exists(SUSPECTS_KEY)


def test_a_job_whose_message_a_worker_reserved_is_not_sent_again(backends, lost, celery, sender):
    now = time.time()
    job_id = queued_job(backends, now - lost.grace - 1)
    enqueue_render(celery, backends.settings, job_id)
    with reserved_by_a_worker(celery, backends.settings) as message:
        assert message.headers["id"] == job_id
        assert backends.redis.llen(backends.settings.queue_name) == 0
        assert backends.redis.hlen(UNACKED_KEY) == 1
        assert sweeps(lost, now, 3) == [] and sender.sent == []
        assert not backends.redis.exists(SUSPECTS_KEY)


def test_a_job_younger_than_the_grace_period_is_left_to_its_upload(backends, lost, sender):
    now = time.time()
    job_id = queued_job(backends, now - lost.grace + 3 * lost.confirm)
    assert sweeps(lost, now, 3) == [] and sender.sent == []
    assert not backends.redis.exists(SUSPECTS_KEY)
    assert sweeps(lost, now + 4 * lost.confirm, 2) == [job_id]  # once past it, nothing sends it but the janitor


def test_an_index_entry_whose_record_expired_is_pruned_not_sent(backends, lost, sender):
    now = time.time()
    job_id = new_job_id()
    backends.redis.zadd(JobStore.QUEUE_KEY, {job_id: now - lost.grace - 1})
    assert sweeps(lost, now, 2) == [] and sender.sent == []
    assert backends.jobs.queue_position(job_id) is None


def test_a_job_already_started_is_not_sent_again(backends, lost, sender):
    # Started by a render process, or batched along with another job's render: no longer queued, whether or not
    # its own message is still somewhere.
    now = time.time()
    job_id = queued_job(backends, now - lost.grace - 1)
    starter = JobStarter(backends.redis, backends.settings.job_ttl_seconds, 10.0)
    assert isinstance(starter.start(job_id, "worker-a:1", now, max_restarts=2, stage="starting"), Started)
    assert sweeps(lost, now, 3) == [] and sender.sent == []
    # As a scan sees a job started between its snapshot of the queue and its look at the record:
    backends.redis.zadd(JobStore.QUEUE_KEY, {job_id: now - lost.grace - 1})
    assert sweeps(lost, now + 3 * lost.confirm, 3) == [] and sender.sent == []


def test_a_resent_job_is_started_once_and_a_second_delivery_drops_out(backends, lost, celery):
    now = time.time()
    job_id = queued_job(backends, now - lost.grace - 1)
    assert sweeps(lost, now, 2) == [job_id]
    starter = JobStarter(backends.redis, backends.settings.job_ttl_seconds, 10.0)
    with reserved_by_a_worker(celery, backends.settings) as message:
        [delivered] = message.decode()[0]  # the task's args: the job's id
        started = starter.start(delivered, "worker-a:1", now, max_restarts=2, stage="starting")
        assert isinstance(started, Started) and started.job.id == job_id and started.job.attempts == 1
        message.ack()
    enqueue_render(celery, backends.settings, job_id)  # the lost message, back after all (a healed partition)
    with reserved_by_a_worker(celery, backends.settings) as message:
        again = starter.start(message.headers["id"], "worker-b:2", now + 1, max_restarts=2, stage="starting")
        assert again == NotStarted("leased", "worker-a:1")
        message.ack()
    assert sweeps(lost, now + 2 * lost.confirm, 2) == []  # processing: nothing for the janitor to send
    assert backends.jobs.get(job_id).attempts == 1


def test_the_sweep_sends_the_lost_jobs(backends, sender):
    client = redis.Redis.from_url(backends.settings.redis_url)
    lost = LostMessages(client, backends.settings, sender)
    now = time.time()
    job_id = queued_job(backends, now - lost.grace - 1)

    def janitor(at: float) -> Janitor:
        eraser = Eraser(
            ObjectStore(backends.settings), SourceKeys(client, 10), DeletionSchedule(client), backends.audit
        )
        leases = JobLeases(client, backends.settings.job_lease_seconds)
        return Janitor(
            backends.settings, client, backends.jobs, eraser, leases, sender, clock=lambda: at, lost_messages=lost
        )

    janitor(now).sweep()
    janitor(now + lost.confirm).sweep()
    assert sender.sent == [job_id] and waiting_ids(backends) == [job_id]


# --- a lost deletion entry ----------------------------------------------------------------------------------


def test_a_source_whose_deletion_entry_was_lost_is_still_erased_within_its_maximum_age(backends, astronaut_path):
    """The MULTI that scheduled the source's deletion (and recorded the job) lost in a failover, the source
    written after it kept: reconciliation adopts it with its deadline counted from when it was stored, not
    from when it was found, and the sweep erases and audits it then."""
    job_id = backends.submit(astronaut_path.read_bytes())
    key = source_key(job_id)
    backends.redis.delete(
        DeletionSchedule.META, DeletionSchedule.PREFIX + "source", DeletionSchedule.BORN_PREFIX + "source"
    )
    backends.redis.delete(JobStore.KEY_PREFIX + job_id)
    [stored_at] = [
        modified for found, modified in backends.eraser.list_objects(ObjectKind.SOURCE, "sources/") if found == key
    ]
    max_age = backends.settings.source_max_age_seconds

    client = redis.Redis.from_url(backends.settings.redis_url)
    eraser = Eraser(
        ObjectStore(backends.settings), SourceKeys(client, 10), DeletionSchedule(client), AuditLog(client, 1000)
    )
    leases = JobLeases(client, backends.settings.job_lease_seconds)

    def janitor(at: float) -> Janitor:
        return Janitor(backends.settings, client, backends.jobs, eraser, leases, lambda _: None, clock=lambda: at)

    found_at = stored_at + max_age / 2  # found late: half its life gone
    assert janitor(found_at).reconcile() >= 1
    assert backends.redis.zscore(DeletionSchedule.PREFIX + "source", key) == pytest.approx(stored_at + max_age)
    assert eraser.schedule.get(ObjectKind.SOURCE, key).created_at == pytest.approx(stored_at)
    assert janitor(stored_at + max_age - 0.5).sweep().deleted == 0 and backends.source_exists(job_id)
    assert janitor(stored_at + max_age + 0.1).sweep().deleted == 1
    assert not backends.source_exists(job_id)
    [entry] = [e for e in backends.audit.entries() if e.job_id == job_id]
    assert entry.kind is ObjectKind.SOURCE and entry.deleted_by is Deleter.JANITOR and entry.verified
    assert entry.reason == "expired"
