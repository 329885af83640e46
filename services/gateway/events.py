"""GET /v1/portraits/<id>/events: a job's live progress as server-sent events (#10).

Fed by the job's Redis Stream (shared/events.py), which JobStore appends to with every change it makes:

    id: 1718000000123-0          the stream entry's id (resume with `Last-Event-ID`)
    event: stage                 stage | queue_position | done | failed | deleted
    data: {"stage":"detect"}     one line of JSON

- `stage` {"stage"} for every stage the worker reports, `fetch` first;
- `queue_position` {"queue_position": 0-based} while queued: not in the stream (every upload and every start
  moves everyone), so each stream reads its job's rank itself once per read slice and sends it when it changes;
  it carries no `id:` (an event without one leaves the client's last event id as it was);
- `done`/`failed` {the document GET /v1/portraits/<id> answers, built from the record when sent, so its
  presigned `result_url` is fresh}, `deleted` {} (erased or expired); the stream then ends;
- `: keep-alive` when nothing was sent for `events_heartbeat_seconds`.

A new client gets where the job is now (from the record and the stream's newest id, read in one MULTI), then
what follows; a client with `Last-Event-ID` (header, or `?last_event_id=` where it cannot set headers) gets the
entries after that id instead. Either way a job that has ended answers its final event at once and the stream
closes; a queued job answers its position at once.

Threads: every open stream holds one of gunicorn's threads (`gateway_threads` is sized for it: settings.py).
It waits in XREAD BLOCK slices of `READ_SLICE_SECONDS`, so within about a second it notices a client that went
away (the socket reads EOF), a worker that is stopping (worker.py's `STOPPING`) and a record that vanished. The
blocking reads use a Redis client of their own, whose socket timeout is the slice plus `redis_timeout`
(the gateway's main client would time out at 1 s in the middle of a 1 s block).
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
from flask import Blueprint, Flask, Request, Response, current_app, request

from services.gateway import metrics
from services.gateway.context import EXTENSION_KEY as GATEWAY_KEY
from services.gateway.context import Gateway, gateway
from services.gateway.gunicorn_worker import STOPPING
from services.gateway.sse import HEARTBEAT, SseEvent, SseEventName, format_event
from services.gateway.views import bind_job as _bind_job
from services.gateway.views import not_found as _not_found
from services.gateway.views import portrait_view
from shared import events as job_events
from shared.backends import blocking_redis_client
from shared.ids import is_job_id
from shared.jobs import TERMINAL, Job, JobState, JobStore
from shared.jobs import now as clock
from shared.logging import get_logger

log = get_logger(__name__)

EXTENSION_KEY = "portraits_events"
READ_SLICE_SECONDS = 1.0
READ_COUNT = 32  # stream entries per read; a job has a dozen
RETRY_MS = 2000  # sent as `retry:`: how long an EventSource waits before it reconnects
STREAM_HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # nginx (the ingress) would otherwise hold events back in its buffer
}
_FINAL_NAMES = {JobState.DONE: SseEventName.DONE, JobState.FAILED: SseEventName.FAILED}

blueprint = Blueprint("events", __name__)


@dataclass(frozen=True)
class EventFeed:
    """The route's collaborators: the job store on a Redis client whose timeout allows a blocking read."""

    jobs: JobStore
    heartbeat_seconds: float

    @classmethod
    def for_app(cls, app: Flask) -> EventFeed:
        gw: Gateway = app.extensions[GATEWAY_KEY]
        settings = gw.settings
        # One connection per open stream (a blocked XREAD holds its connection): 200 streams, 200 connections,
        # far below Redis's 10 000; at most one per thread, so the pool's cap (redis-py's default is 100) is the
        # thread count. Its socket waits a read slice on top of the usual budget (shared/backends.py).
        client = blocking_redis_client(settings, READ_SLICE_SECONDS, max_connections=gw.budget.redis_max_connections)
        return cls(jobs=JobStore(client, settings.job_ttl_seconds), heartbeat_seconds=settings.events_heartbeat_seconds)


def register(app: Flask) -> None:
    app.extensions[EXTENSION_KEY] = EventFeed.for_app(app)
    app.register_blueprint(blueprint)


def last_event_id(req: Request) -> str | None:
    """The client's resume point, if it is a stream id; anything else is ignored (the client starts afresh)."""
    value = (req.headers.get("Last-Event-ID") or req.args.get("last_event_id") or "").strip()
    return value if job_events.is_event_id(value) else None


@blueprint.get("/v1/portraits/<id>/events")
def portrait_events(id: str) -> Response:  # the public path parameter is called `id`
    if not is_job_id(id):
        raise _not_found()  # malformed ids never reach Redis
    _bind_job(id)
    gw = gateway()
    feed: EventFeed = current_app.extensions[EXTENSION_KEY]
    # Read before answering, on the gateway's usual client: an unknown id is a 404 envelope and a Redis outage a
    # 503, not a stream that ends at once.
    snapshot = gw.jobs.snapshot(id)
    if snapshot.job is None:
        raise _not_found()
    follower = Follower(
        gw=gw,
        feed=feed,
        job=snapshot.job,  # deleted or expired, but not yet removed: the stream answers `deleted` at once
        newest_id=snapshot.last_event_id,
        resume_from=last_event_id(request),
        stopping=request.environ.get(STOPPING, lambda: False),
        client_gone=_peer_closed_check(request.environ.get("gunicorn.socket")),
    )
    return Response(follower.stream(), mimetype="text/event-stream", headers=STREAM_HEADERS)


def _peer_closed_check(sock: Any) -> Callable[[], bool]:
    """Whether the client closed its side. An SSE client sends nothing after its request, so a readable socket
    means EOF (or a reset); under the test client there is no socket and the answer is always no."""
    if not isinstance(sock, socket.socket):
        return lambda: False

    def closed() -> bool:
        # poll, not select: select() refuses descriptors above 1024, and a worker holding 200 streams (and their
        # Redis connections) has many (the first load run ended 179 of 200 live streams as "gone" that way).
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        try:
            if not poller.poll(0):
                return False
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    return closed


@dataclass
class Follower:
    """One client's stream: what to send first, then the job's stream from there, until the job ends."""

    gw: Gateway
    feed: EventFeed
    job: Job
    newest_id: str | None
    resume_from: str | None
    stopping: Callable[[], bool]
    client_gone: Callable[[], bool]
    sent_position: int | None = None

    def stream(self) -> Iterator[bytes]:
        metrics.EVENT_STREAMS_OPEN.inc()
        outcome = "ended"
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            for message in self._messages():
                if message is None:  # a slice went by: is anyone still there?
                    if self.stopping():
                        outcome = "shutdown"
                        return
                    if self.client_gone():
                        outcome = "client_gone"
                        return
                    continue
                yield message
        except GeneratorExit:
            outcome = "client_gone"  # the server could not write to it
            raise
        except redis.RedisError as exc:
            # Headers are sent: no envelope is possible. Ending lets the client resume with Last-Event-ID.
            outcome = "redis_error"
            log.warning("event stream ended: redis", error_type=type(exc).__name__)
        finally:
            metrics.EVENT_STREAMS_OPEN.dec()
            metrics.EVENT_STREAMS.labels(outcome=outcome).inc()

    def _messages(self) -> Iterator[bytes | None]:
        """Formatted messages and heartbeats, with None after each empty read slice; returns when the job ends."""
        job = self.job
        heartbeat = self.feed.heartbeat_seconds
        slice_ms = max(1, int(min(READ_SLICE_SECONDS, heartbeat) * 1000))
        if self.resume_from is None:
            cursor = self.newest_id or "0-0"
            if job.state in TERMINAL:
                yield format_event(self._final(self.newest_id, job))  # the record read with the newest id
                return
            if job.state is JobState.PROCESSING and job.stage:
                yield format_event(SseEvent(SseEventName.STAGE, {"stage": job.stage}, self.newest_id))
        else:
            cursor = self.resume_from
        last_write = time.monotonic()
        first = True
        while True:
            # The first read does not wait: a resuming client catches up (or learns the job ended) at once. Its
            # record is the final one once an entry says the job ended (JobStore.follow): no read of its own.
            progress = self.feed.jobs.follow(
                self.job.id, cursor, block_ms=None if first else slice_ms, count=READ_COUNT
            )
            first = False
            for entry in progress.events:
                cursor = entry.id
                if entry.state in TERMINAL:
                    yield format_event(self._final(entry.id, progress.job()))
                    return
                if entry.state is JobState.PROCESSING and entry.stage:
                    self.sent_position = None
                    yield format_event(SseEvent(SseEventName.STAGE, {"stage": entry.stage}, entry.id))
                    last_write = time.monotonic()
            if progress.events:
                continue
            # Nothing new: is the job still there, and where in the queue?
            state, rank = progress.state, progress.queue_rank
            if state is None or state in TERMINAL:
                # Gone (erased: the record and its stream went together) or ended without an entry we saw (a
                # record older than its stream, a resume id from elsewhere): say how it ended, from the record.
                yield format_event(self._final(cursor if cursor != "0-0" else None, progress.job()))
                return
            if state is JobState.QUEUED and rank is not None and rank != self.sent_position:
                self.sent_position = rank
                yield format_event(SseEvent(SseEventName.QUEUE_POSITION, {"queue_position": self.sent_position}))
                last_write = time.monotonic()
            elif time.monotonic() - last_write >= heartbeat:
                yield HEARTBEAT
                last_write = time.monotonic()
            else:
                yield None

    def _final(self, event_id: str | None, job: Job | None) -> SseEvent:
        """The last event, from the record as just read (None: gone): done/failed with the status document, or
        deleted."""
        view = portrait_view(self.gw, job, clock()) if job is not None else None
        if view is None or job is None or job.state not in _FINAL_NAMES:
            return SseEvent(SseEventName.DELETED, {}, event_id)
        return SseEvent(_FINAL_NAMES[job.state], view, event_id)
