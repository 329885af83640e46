"""Webhook delivery against real Redis and a real HTTP receiver (#10): signed, retried with backoff, never
redirected, refused at send time when the address is not public, claimed once across replicas."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from standardwebhooks import Webhook

from services.janitor import metrics
from services.janitor.webhooks import DeliveryLoop
from shared.jobs import Job, JobState
from shared.webhooks import (
    Deliverer,
    Delivery,
    EventType,
    Outcome,
    WebhookOutbox,
    delivery_id,
    notify_finished,
    payload_for,
)
from tests.support.webhooks import LOOPBACK, new_secret, receiver

pytestmark = pytest.mark.integration

SHORT = (0.05, 0.05, 0.05, 0.05, 0.05)  # the real schedule's shape, in tens of milliseconds


@pytest.fixture
def client(redis_server) -> redis.Redis:
    client = redis.Redis.from_url(redis_server.url)
    for key in client.scan_iter("portraits:webhooks:*"):
        client.delete(key)
    return client


@pytest.fixture
def outbox(client) -> WebhookOutbox:
    return WebhookOutbox(client)


@pytest.fixture
def secret() -> str:
    return new_secret()


def finished_job(url: str, state: JobState = JobState.DONE, job_id: str = "j" * 32) -> Job:
    extra = (
        {"style": "ink-wash", "family": "ink", "reason": "a calm face"}
        if state is JobState.DONE
        else {"error_code": "no_face", "error_message": "no face found"}
    )
    return Job(id=job_id, state=state, created_at=time.time(), callback_url=url, **extra)


def loop(
    outbox: WebhookOutbox,
    secret: str,
    max_attempts: int = 6,
    allowed: frozenset[str] = frozenset({LOOPBACK}),
) -> DeliveryLoop:
    return DeliveryLoop(outbox, Deliverer(secret, allowed), max_attempts, schedule=SHORT)


def drain(delivery_loop: DeliveryLoop, outbox: WebhookOutbox, seconds: float = 5.0) -> None:
    """Run passes until the outbox is empty (retries included)."""
    deadline = time.monotonic() + seconds
    while outbox.pending() and time.monotonic() < deadline:
        delivery_loop.run_once()
        time.sleep(0.02)
    assert outbox.pending() == 0


def count(outcome: str) -> float:
    return metrics.WEBHOOK_DELIVERIES.labels(outcome=outcome)._value.get()


def test_a_delivery_is_signed_the_standard_webhooks_way(outbox, secret):
    with receiver() as hook:
        job = finished_job(hook.url("/hooks/portraits?key=abc"))
        notify_finished(outbox, job, time.time())
        drain(loop(outbox, secret), outbox)
        [request] = hook.received
    assert request.path == "/hooks/portraits?key=abc"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == delivery_id(job.id, EventType.DONE)
    document = Webhook(secret).verify(request.body, request.headers)  # raises unless the signature is ours
    assert document["type"] == "portrait.done"
    assert document["data"] == {
        "id": job.id,
        "status": "done",
        "status_url": f"/v1/portraits/{job.id}",
        "style": "ink-wash",
        "family": "ink",
        "reason": "a calm face",
        "error": None,
    }


def test_a_failing_receiver_gets_exactly_one_successful_delivery_after_retries(outbox, secret):
    delivered, retried = count("delivered"), count("retried")
    with receiver(script=[500, 500]) as hook:
        notify_finished(outbox, finished_job(hook.url(), JobState.FAILED), time.time())
        drain(loop(outbox, secret), outbox)
        assert hook.statuses() == [500, 500, 200]
        ids = {request.headers["webhook-id"] for request in hook.received}
        signatures = [request.headers["webhook-signature"] for request in hook.received]
        for request in hook.received:  # every attempt is signed afresh, and verifies
            assert Webhook(secret).verify(request.body, request.headers)["data"]["error"]["code"] == "no_face"
    assert len(ids) == 1 and len(signatures) == 3  # one message, three attempts
    assert count("delivered") == delivered + 1 and count("retried") == retried + 2


def test_retries_wait_for_their_backoff(outbox, secret, client):
    with receiver(script=[503]) as hook:
        notify_finished(outbox, finished_job(hook.url()), time.time())
        now = [time.time()]
        delivery_loop = DeliveryLoop(outbox, Deliverer(secret, frozenset({LOOPBACK})), 6, clock=lambda: now[0])
        assert delivery_loop.run_once() == 1
        [score] = [score for _, score in client.zrange(WebhookOutbox.DUE, 0, -1, withscores=True)]
        assert score == pytest.approx(now[0] + 5)  # the first wait of the real schedule
        now[0] += 4.9
        assert delivery_loop.run_once() == 0  # not due yet
        now[0] += 0.2
        assert delivery_loop.run_once() == 1
        assert hook.statuses() == [503, 200] and outbox.pending() == 0


def test_a_receiver_that_never_answers_2xx_is_given_up(outbox, secret):
    gave_up = count("gave_up")
    with receiver(script=[500] * 10) as hook:
        notify_finished(outbox, finished_job(hook.url()), time.time())
        drain(loop(outbox, secret, max_attempts=3), outbox)
        assert hook.statuses() == [500, 500, 500]
    assert count("gave_up") == gave_up + 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed(outbox, secret, status):
    with receiver() as target, receiver(script=[status] * 10, location="") as hook:
        hook.location = target.url("/stolen")
        notify_finished(outbox, finished_job(hook.url()), time.time())
        drain(loop(outbox, secret, max_attempts=2), outbox)
        assert hook.statuses() == [status, status]  # a failed attempt each time
        assert target.received == []  # the redirect's target never saw a request


def test_the_address_is_checked_again_at_send_time(outbox, secret):
    """A URL accepted earlier (here: allow-listed at submit) that resolves to loopback when sent — as a DNS
    rebinding attack would arrange — is refused by the deliverer itself and not retried."""
    refused = count("refused")
    with receiver() as hook:
        for n, url in enumerate((hook.url(), hook.url().replace(LOOPBACK, "localhost"))):
            notify_finished(outbox, finished_job(url, job_id=f"{n:032d}"), time.time())
        # The sender's allow-list is empty; the receiver's port is allowed, so the address is what refuses.
        sender = Deliverer(secret, frozenset(), allowed_ports=frozenset({hook.port}))
        drain(DeliveryLoop(outbox, sender, 6, schedule=SHORT), outbox)
        assert hook.received == []
    assert count("refused") == refused + 2


def test_a_closed_port_is_a_failed_attempt(outbox, secret):
    with receiver() as hook:
        url = hook.url()
    attempt = Deliverer(secret, frozenset({LOOPBACK})).send(
        Delivery("msg_x", "x", EventType.DONE, url, payload_for(finished_job(url), EventType.DONE, 0), 0.0)
    )
    assert attempt.outcome is Outcome.FAILED and attempt.status is None


def test_a_claimed_delivery_is_hidden_from_other_replicas(outbox, client):
    notify_finished(outbox, finished_job("https://example.com/hook"), time.time())
    now = time.time()
    [claimed] = outbox.claim_due(now, 10, lease_seconds=60)
    assert claimed.url == "https://example.com/hook" and claimed.attempts == 0
    assert WebhookOutbox(client).claim_due(now, 10, lease_seconds=60) == []  # another replica
    assert [d.id for d in WebhookOutbox(client).claim_due(now + 61, 10, 60)] == [claimed.id]  # lease over
    again = outbox.reschedule(claimed, now + 5)
    assert again.attempts == 1 and outbox.get(claimed.id).attempts == 1
    outbox.done(claimed.id)
    assert outbox.pending() == 0 and not client.exists(outbox.key(claimed.id))


def test_enqueueing_twice_sends_once(outbox, secret):
    with receiver() as hook:
        job = finished_job(hook.url())
        notify_finished(outbox, job, time.time())
        notify_finished(outbox, job, time.time())
        drain(loop(outbox, secret), outbox)
        assert len(hook.received) == 1


def test_outbox_records_expire_by_themselves(outbox, client):
    notify_finished(outbox, finished_job("https://example.com/hook"), time.time())
    [key] = list(client.scan_iter(WebhookOutbox.PREFIX + "*"))
    assert 0 < client.ttl(key) <= WebhookOutbox.TTL_SECONDS


def test_no_callback_no_delivery_and_a_redis_error_is_swallowed(outbox, redis_server):
    notify_finished(outbox, Job(id="n" * 32, state=JobState.DONE, created_at=0.0), time.time())
    assert outbox.pending() == 0
    dead = WebhookOutbox(redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)))
    notify_finished(dead, finished_job("https://example.com/hook"), time.time())  # logged, not raised


def test_the_janitor_thread_delivers_on_its_own(outbox, secret, client, redis_server):
    from services.janitor import webhooks
    from shared.settings import Settings

    stop = threading.Event()
    settings = Settings(redis_url=redis_server.url, webhook_secret=secret, webhook_allowed_hosts=LOOPBACK)
    assert webhooks.start(Settings(redis_url=redis_server.url), client, stop) is None  # disabled
    with receiver() as hook:
        thread = webhooks.start(settings, client, stop)
        assert thread is not None
        notify_finished(outbox, finished_job(hook.url()), time.time())
        deadline = time.monotonic() + 5
        while not hook.received and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()
        [request] = hook.received
        assert Webhook(secret).verify(request.body, request.headers)


def test_a_refusal_logs_the_resolved_address_for_operators(outbox, secret, monkeypatch):
    """The client's refusal never names what its host resolved to (#25); the janitor's log line does, so an
    operator can tell DNS rebinding from a typo. The URL's path and query still stay out of it."""
    from services.janitor import webhooks as janitor_webhooks

    logged: list[tuple[str, dict]] = []

    class Recorder:
        def __getattr__(self, level: str):
            return lambda message, **fields: logged.append((message, fields))

    monkeypatch.setattr(janitor_webhooks, "log", Recorder())
    with receiver() as hook:
        url = hook.url("/hook?token=client-secret").replace(LOOPBACK, "localhost")
        notify_finished(outbox, finished_job(url), time.time())
        sender = Deliverer(secret, frozenset(), allowed_ports=frozenset({hook.port}))
        drain(DeliveryLoop(outbox, sender, 6, schedule=SHORT), outbox)
        assert hook.received == []
    [(message, fields)] = [entry for entry in logged if entry[0].startswith("webhook refused")]
    assert fields["address"] in {"127.0.0.1", "::1"} and fields["host"] == "localhost"
    assert fields["address"] not in fields["detail"]  # the detail is the client's message
    assert "client-secret" not in str(fields)
