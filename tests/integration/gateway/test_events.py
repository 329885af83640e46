"""Live progress (#10): GET /v1/portraits/<id>/events against real Redis — the Flask test client where a stream's
content is what matters, gunicorn where the stream itself is (chunks as they happen, heartbeats, disconnects)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from services.client import PortraitsClient, ServerEvent, parse_sse
from shared import events as job_events
from shared.ids import new_job_id
from shared.jobs import Job, JobState, JobStore, now
from shared.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def jobs(rdb: redis.Redis, gateway_settings: Settings) -> JobStore:
    return JobStore(rdb, gateway_settings.job_ttl_seconds)


def queued(jobs: JobStore) -> str:
    job_id = new_job_id()
    jobs.create(Job(id=job_id, state=JobState.QUEUED, created_at=now(), style_requested="auto"))
    return job_id


def finish(jobs: JobStore, job_id: str) -> None:
    jobs.transition(
        job_id,
        JobState.DONE,
        stage=None,
        finished_at=now(),
        style="sumi-e",
        family="ink",
        reason="the model settled on ink",
        strength=0.6,
        timings={"detect": 0.05},
        result_key=f"results/{job_id}.jpg",
        result_expires_at=now() + 600,
    )


class Stream:
    """A streamed response from the test client, read one message (chunk) at a time."""

    def __init__(self, client: FlaskClient, path: str, headers: dict[str, str] | None = None) -> None:
        self.response = client.get(path, headers=headers or {}, buffered=False)
        self._chunks: Iterator[bytes] = iter(self.response.response)

    def next_chunk(self) -> str:
        return next(self._chunks).decode()

    def next_event(self) -> ServerEvent:
        """The next event, skipping `retry:` and comments."""
        while True:
            parsed = list(parse_sse(self.next_chunk().split("\n")))
            if parsed:
                (event,) = parsed
                return event

    def rest(self) -> list[ServerEvent]:
        return list(parse_sse("".join(chunk.decode() for chunk in self._chunks).split("\n")))

    def close(self) -> None:
        self.response.close()


@pytest.fixture
def stream(client: FlaskClient) -> Iterator[Callable[..., Stream]]:
    opened: list[Stream] = []

    def open_stream(job_id: str, **headers: str) -> Stream:
        opened.append(Stream(client, f"/v1/portraits/{job_id}/events", headers))
        return opened[-1]

    yield open_stream
    for each in opened:
        each.close()


def test_events_arrive_in_order_with_the_status_document(jobs: JobStore, stream, client: FlaskClient) -> None:
    job_id = queued(jobs)
    events = stream(job_id)
    assert events.response.status_code == 200
    assert events.response.mimetype == "text/event-stream"
    assert events.response.headers["Cache-Control"] == "no-store"
    assert events.response.headers["X-Accel-Buffering"] == "no"
    assert events.next_chunk() == "retry: 2000\n\n"
    position = events.next_event()
    assert (position.event, position.json(), position.id) == ("queue_position", {"queue_position": 0}, None)

    jobs.transition(job_id, JobState.PROCESSING, started_at=now(), attempts=1, stage="fetch")
    for stage in ("decode", "detect", "frame"):
        jobs.set_stage(job_id, stage)
    finish(jobs, job_id)

    received = [events.next_event() for _ in range(4)] + events.rest()
    assert [(event.event, event.json()) for event in received[:4]] == [
        ("stage", {"stage": stage}) for stage in ("fetch", "decode", "detect", "frame")
    ]
    done = received[4]
    assert done.event == "done" and len(received) == 5  # and the stream ended
    status = client.get(f"/v1/portraits/{job_id}").json
    document = done.json()
    assert document.keys() == status.keys()
    assert document["result_url"].startswith("http") and document["expires_at"]
    assert {k: v for k, v in document.items() if k not in ("result_url", "expires_at")} == {
        k: v for k, v in status.items() if k not in ("result_url", "expires_at")
    }
    assert document["status"] == "done" and document["style"] == "sumi-e" and document["reason"]
    # Every id is the job stream's own, in order.
    history = [event.id for event in jobs.history(job_id)]
    assert [event.id for event in received] == history[1:]


def test_resume_with_last_event_id_skips_what_was_seen(jobs: JobStore, stream) -> None:
    job_id = queued(jobs)
    jobs.transition(job_id, JobState.PROCESSING, stage="fetch")
    for stage in ("decode", "detect"):
        jobs.set_stage(job_id, stage)
    seen = [event.id for event in jobs.history(job_id)]
    resumed = stream(job_id, **{"Last-Event-ID": seen[2]})  # created, fetch, decode seen
    assert resumed.next_event() == ServerEvent("stage", '{"stage":"detect"}', seen[3])
    jobs.transition(
        job_id, JobState.FAILED, stage=None, finished_at=now(), error_code="no_face", error_message="no face found"
    )
    (failed,) = resumed.rest()
    assert failed.event == "failed"
    assert failed.json()["error"] == {"code": "no_face", "message": "no face found"}


def test_resume_from_the_query_string_and_after_the_end(jobs: JobStore, client: FlaskClient) -> None:
    job_id = queued(jobs)
    jobs.transition(job_id, JobState.PROCESSING, stage="fetch")
    jobs.set_stage(job_id, "generate")
    finish(jobs, job_id)
    ids = [event.id for event in jobs.history(job_id)]
    body = client.get(f"/v1/portraits/{job_id}/events?last_event_id={ids[1]}").get_data(as_text=True)
    assert [(event.event, event.id) for event in parse_sse(body.split("\n"))] == [("stage", ids[2]), ("done", ids[3])]
    # A client that saw the end and reconnects (EventSource does) is told the end again, and nothing else.
    again = client.get(f"/v1/portraits/{job_id}/events", headers={"Last-Event-ID": ids[3]}).get_data(as_text=True)
    assert [(event.event, event.id) for event in parse_sse(again.split("\n"))] == [("done", ids[3])]


def test_a_finished_job_answers_its_final_event_at_once(jobs: JobStore, client: FlaskClient) -> None:
    job_id = queued(jobs)
    jobs.transition(job_id, JobState.PROCESSING, stage="fetch")
    finish(jobs, job_id)
    started = time.monotonic()
    body = client.get(f"/v1/portraits/{job_id}/events").get_data(as_text=True)
    assert time.monotonic() - started < 0.5  # no read slice waited for
    (done,) = parse_sse(body.split("\n"))
    assert done.event == "done" and done.json()["status"] == "done"
    assert done.id == jobs.snapshot(job_id).last_event_id


def test_the_final_event_needs_no_read_of_its_own(jobs: JobStore, stream, client: FlaskClient, monkeypatch) -> None:
    """#11: each read brings the record along with the stream's entries, in one round trip (Redis holds the HGETALL
    behind the blocked XREAD until it returns), so the final event follows the transition without a second read."""
    job_id = queued(jobs)
    jobs.transition(job_id, JobState.PROCESSING, stage="fetch")
    events = stream(job_id)
    assert events.next_event().event == "stage"
    gateway_jobs = client.application.extensions["portraits_gateway"].jobs
    monkeypatch.setattr(gateway_jobs, "get", lambda *_: pytest.fail("the final event read the record again"))
    finish(jobs, job_id)
    (done,) = events.rest()
    assert done.event == "done"
    assert (done.json()["style"], done.json()["status"]) == ("sumi-e", "done")
    assert done.json()["result_url"]


def test_erasure_ends_the_stream_with_deleted(jobs: JobStore, stream, client: FlaskClient) -> None:
    job_id = queued(jobs)
    jobs.transition(job_id, JobState.PROCESSING, stage="fetch")
    events = stream(job_id)
    assert events.next_event().event == "stage"
    assert client.delete(f"/v1/portraits/{job_id}").status_code == 204
    (deleted,) = events.rest()
    assert (deleted.event, deleted.json()) == ("deleted", {})
    # The stream went with the record: nothing about the job is left, and its id is unknown from now on.
    assert not jobs._redis.exists(job_events.key(job_id))
    assert client.get(f"/v1/portraits/{job_id}/events").status_code == 404


def test_queue_position_is_sent_when_it_changes(jobs: JobStore, stream) -> None:
    ahead = queued(jobs)
    job_id = queued(jobs)
    events = stream(job_id)
    assert events.next_event().json() == {"queue_position": 1}
    jobs.transition(ahead, JobState.PROCESSING, stage="fetch")
    assert events.next_event().json() == {"queue_position": 0}


def test_heartbeat_when_idle(make_app: Callable[..., Flask], jobs: JobStore) -> None:
    job_id = queued(jobs)
    jobs.transition(job_id, JobState.PROCESSING, stage="fetch")
    response = (
        make_app(events_heartbeat_seconds=0.2).test_client().get(f"/v1/portraits/{job_id}/events", buffered=False)
    )
    try:
        chunks = iter(response.response)
        assert [next(chunks) for _ in range(2)][1].startswith(b"id: ")
        assert next(chunks) == b": keep-alive\n\n"
        assert next(chunks) == b": keep-alive\n\n"
    finally:
        response.close()


@pytest.mark.parametrize("job_id", ["A" * 32, "not-an-id", "x" * 33])
def test_unknown_or_malformed_ids_answer_the_404_envelope(client: FlaskClient, job_id: str) -> None:
    response = client.get(f"/v1/portraits/{job_id}/events")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_a_malformed_last_event_id_starts_afresh(jobs: JobStore, client: FlaskClient) -> None:
    job_id = queued(jobs)
    jobs.transition(job_id, JobState.PROCESSING, stage="fetch")
    finish(jobs, job_id)
    body = client.get(f"/v1/portraits/{job_id}/events", headers={"Last-Event-ID": "yesterday"}).get_data(True)
    assert [event.event for event in parse_sse(body.split("\n"))] == ["done"]


# ------------------------------------------------------------------------------------------- under gunicorn


def _open(port: int, job_id: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", f"/v1/portraits/{job_id}/events")
    return connection, connection.getresponse()


def test_a_real_stream_from_queue_to_done(serve, jobs: JobStore) -> None:
    server = serve(events_heartbeat_seconds=0.5)
    job_id = queued(jobs)
    connection, response = _open(server.port, job_id)
    try:
        assert response.status == 200
        assert response.getheader("Content-Type").startswith("text/event-stream")
        assert response.getheader("X-Accel-Buffering") == "no"
        lines: list[str] = []

        def read_until(predicate: Callable[[str], bool]) -> None:
            while not predicate(line := response.readline().decode().rstrip("\r\n")):
                lines.append(line)
            lines.append(line)

        read_until(lambda line: line == 'data: {"queue_position":0}')
        read_until(lambda line: line == ": keep-alive")  # nothing else happened for 0.5 s
        jobs.transition(job_id, JobState.PROCESSING, stage="fetch")
        read_until(lambda line: line == 'data: {"stage":"fetch"}')
        jobs.set_stage(job_id, "generate")
        finish(jobs, job_id)
        rest = response.read().decode()  # the stream ends after `done`: read() returns
        events = list(parse_sse([*lines, *rest.split("\n")]))
        assert [event.event for event in events] == ["queue_position", "stage", "stage", "done"]
        assert events[-1].json()["style"] == "sumi-e"
    finally:
        connection.close()


def test_streams_of_clients_that_left_free_their_threads(serve, jobs: JobStore) -> None:
    """With one worker of two threads, two streams take both; once their clients go, each thread notices within
    a read slice (the socket reads EOF) and the server answers again."""
    server = serve(gateway_workers=1, gateway_threads=2)
    job_id = queued(jobs)
    opened = [_open(server.port, job_id) for _ in range(2)]
    for _connection, response in opened:
        assert response.readline() == b"retry: 2000\n"  # the stream holds a thread
    status: list[int] = []
    reader = threading.Thread(target=lambda: status.append(server.request("GET", "/healthz", timeout=10)[0]))
    reader.start()
    reader.join(2.5)
    assert reader.is_alive(), "both threads should be busy with streams"
    for connection, _response in opened:
        connection.close()
    started = time.monotonic()
    reader.join(5)
    assert status == [200] and time.monotonic() - started < 3


def test_the_cli_follows_the_stream(serve, jobs: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    server = serve()
    job_id = queued(jobs)

    def drive() -> None:
        time.sleep(0.5)
        jobs.transition(job_id, JobState.PROCESSING, stage="fetch")
        jobs.set_stage(job_id, "detect")
        finish(jobs, job_id)

    driver = threading.Thread(target=drive)
    driver.start()
    job = PortraitsClient(f"http://127.0.0.1:{server.port}").wait(f"/v1/portraits/{job_id}", deadline_seconds=20)
    driver.join()
    assert job["status"] == "done" and job["style"] == "sumi-e"
    assert "polling" not in capsys.readouterr().err


def test_the_cli_says_when_it_falls_back_to_polling(jobs: JobStore, capsys: pytest.CaptureFixture[str], serve) -> None:
    server = serve()
    job_id = queued(jobs)
    jobs.transition(job_id, JobState.PROCESSING, stage="fetch")
    finish(jobs, job_id)
    client = PortraitsClient(f"http://127.0.0.1:{server.port}")
    client.events_url = lambda status_url: f"{client.server}/v1/no-such-route"
    job = client.wait(f"/v1/portraits/{job_id}", deadline_seconds=20)
    assert job["status"] == "done"
    err = capsys.readouterr().err
    assert "live progress unavailable (HTTP 404" in err and "polling" in err
    assert json.loads(json.dumps(job))  # the polled document is the same shape


def test_a_stopping_worker_ends_its_streams_at_once(serve, jobs: JobStore) -> None:
    """SIGTERM: each stream ends within a read slice (its client resumes elsewhere with Last-Event-ID) instead
    of holding the worker for its whole graceful timeout (30 s)."""
    server = serve()
    job_id = queued(jobs)
    connection, response = _open(server.port, job_id)
    try:
        assert response.readline() == b"retry: 2000\n"
        assert server.process.pid is not None
        os.kill(server.process.pid, signal.SIGTERM)
        started = time.monotonic()
        rest = response.read().decode()  # returns when the server ends the stream
        assert time.monotonic() - started < 5
        assert [event.event for event in parse_sse(rest.split("\n"))] == ["queue_position"]
    finally:
        connection.close()
