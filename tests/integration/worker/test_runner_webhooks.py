"""The worker and the janitor queue a job's webhook when they end it (#10), and only then: the render never
waits for the receiver, and a job without a callback URL queues nothing."""

from __future__ import annotations

import json
import time

import pytest
import redis

from scripts.support import samples
from services.janitor.sweeper import Janitor
from services.worker.outcomes import DONE, Outcome
from shared.audit import AuditLog
from shared.deletion import DeletionSchedule, Eraser
from shared.errors import JobErrorCode
from shared.leases import JobLeases
from shared.source_keys import SourceKeys
from shared.webhooks import EventType, WebhookOutbox, delivery_id
from tests.support.service import Backends

pytestmark = [pytest.mark.integration, pytest.mark.backends(source_max_age_seconds=10)]

HOOK = "https://hooks.example.com/portraits?token=abc"


def queued(backends: Backends, job_id: str, event: EventType) -> dict:
    delivery = WebhookOutbox(backends.redis).get(delivery_id(job_id, event))
    assert delivery is not None, "no webhook queued"
    assert delivery.url == HOOK and delivery.job_id == job_id and delivery.attempts == 0
    return json.loads(delivery.payload)


def test_a_done_job_queues_its_webhook(backends, engine, astronaut_path):
    job_id = backends.submit(astronaut_path.read_bytes(), style="ink", callback_url=HOOK)
    assert backends.runner(engine).run(job_id) == DONE
    document = queued(backends, job_id, EventType.DONE)
    job = backends.jobs.get(job_id)
    assert document["type"] == "portrait.done"
    assert document["data"] == {
        "id": job_id,
        "status": "done",
        "status_url": f"/v1/portraits/{job_id}",
        "style": job.style,
        "family": "ink",
        "reason": job.reason,
        "error": None,
    }
    assert WebhookOutbox(backends.redis).get(delivery_id(job_id, EventType.FAILED)) is None


def test_a_failed_job_queues_its_webhook(backends, engine):
    job_id = backends.submit(samples.coffee_path().read_bytes(), callback_url=HOOK)
    assert backends.runner(engine).run(job_id) == Outcome.failed(JobErrorCode.NO_FACE)
    document = queued(backends, job_id, EventType.FAILED)
    assert document["type"] == "portrait.failed"
    assert document["data"]["status"] == "failed" and document["data"]["error"]["code"] == "no_face"


def test_no_callback_url_queues_nothing(backends, engine):
    pending = WebhookOutbox(backends.redis).pending()
    job_id = backends.submit(samples.coffee_path().read_bytes())
    assert backends.runner(engine).run(job_id) == Outcome.failed(JobErrorCode.NO_FACE)
    assert WebhookOutbox(backends.redis).pending() == pending


def test_failing_an_already_failed_job_queues_nothing_more(backends, engine, astronaut_path):
    job_id = backends.submit(astronaut_path.read_bytes(), callback_url=HOOK)
    backends.keys.delete(job_id)
    runner = backends.runner(engine)
    assert runner.run(job_id) == Outcome.failed(JobErrorCode.SOURCE_EXPIRED)
    WebhookOutbox(backends.redis).done(delivery_id(job_id, EventType.FAILED))
    runner.fail(job_id, JobErrorCode.TIMEOUT.failure)  # a late time limit, for a job already failed
    assert WebhookOutbox(backends.redis).get(delivery_id(job_id, EventType.FAILED)) is None


def test_the_janitor_queues_the_webhook_of_a_job_it_fails(backends, astronaut_path):
    job_id = backends.submit(astronaut_path.read_bytes(), callback_url=HOOK)
    client = redis.Redis.from_url(backends.settings.redis_url)
    eraser = Eraser(backends.storage, SourceKeys(client, 10), DeletionSchedule(client), AuditLog(client, 1000))
    janitor = Janitor(
        backends.settings,
        client,
        backends.jobs,
        eraser,
        JobLeases(client, 10),
        lambda _: None,
        clock=lambda: time.time() + 11,
        webhooks=WebhookOutbox(client),
    )
    janitor.sweep()
    document = queued(backends, job_id, EventType.FAILED)
    assert document["data"]["error"]["code"] == "source_expired"


def test_a_redis_error_while_queueing_does_not_fail_the_job(backends, engine, astronaut_path):
    class BrokenOutbox(WebhookOutbox):
        def enqueue(self, *args, **kwargs):
            raise redis.ConnectionError("outbox unreachable")

    job_id = backends.submit(astronaut_path.read_bytes(), style="ink", callback_url=HOOK)
    runner = backends.runner(engine)
    runner._webhooks = BrokenOutbox(backends.redis)
    assert runner.run(job_id) == DONE
    assert backends.jobs.get(job_id).result_key
