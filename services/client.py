"""`portraits submit`: send a photo to a running gateway through the public API and wait for the portrait.

Waiting follows the job's live progress stream (GET /v1/portraits/<id>/events, server-sent events: #10); only
when that stream cannot be opened (an older gateway, a proxy that refuses it) does it poll the status URL
instead, and it says so on stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

from shared.stages import PROGRESS, Stage

# The progress bar's steps: the job's whole life, from the one stage vocabulary (shared/stages.py, #12).
STAGES: tuple[str, ...] = tuple(stage.value for stage in PROGRESS)
# The server sends a heartbeat every 15 s: three missed ones mean the connection is dead.
STREAM_READ_TIMEOUT = 45.0
STREAM_RECONNECTS = 3  # consecutive failed (re)connections before falling back to polling


@dataclass(frozen=True)
class ServerEvent:
    """One server-sent event (comments, such as heartbeats, are not events)."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data) if self.data else {}


def parse_sse(lines: Iterable[str]) -> Iterator[ServerEvent]:
    """Events from the lines of a text/event-stream, as the HTML standard's parser reads them (field `retry` and
    comments are skipped; `id` persists only as each event's own)."""
    event, event_id = "", None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield ServerEvent(event or "message", "\n".join(data), event_id)
            event, data, event_id = "", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            event_id = value


def _until(lines: Iterable[str], deadline: float) -> Iterator[str]:
    """The lines, checking the deadline on each (heartbeats included, so a job stuck in the queue times out)."""
    for line in lines:
        if time.monotonic() > deadline:
            raise ApiError(0, "timeout", "the portrait took too long")
        yield line


class StreamUnavailable(RuntimeError):
    """The live progress stream could not be opened or was lost: the caller falls back to polling."""


class _Progress:
    """The progress bar over the pipeline's stages, with the queue position while queued."""

    def __init__(self) -> None:
        self._bar = tqdm(total=len(STAGES) - 1, desc="queued", unit="stage", bar_format="{desc:<24}{bar}| {n}/{total}")

    def show(self, stage: str, position: int | None = None) -> None:
        if stage in STAGES:
            self._bar.n = STAGES.index(stage)
        self._bar.set_description(f"{stage} (#{position + 1} in queue)" if position is not None else stage)

    def close(self) -> None:
        self._bar.close()


class ApiError(RuntimeError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} [{code}, HTTP {status}]")
        self.status, self.code = status, code


@dataclass
class PortraitsClient:
    server: str
    timeout: float = 30.0

    def _check(self, response: requests.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": response.text[:200] or response.reason}
            raise ApiError(response.status_code, error.get("code", "?"), error.get("message", ""))
        return response.json() if response.content else {}

    def submit(self, photo: Path, style: str = "auto", strength: float | None = None) -> dict[str, Any]:
        form = {"style": style} | ({"strength": str(strength)} if strength is not None else {})
        with photo.open("rb") as handle:
            response = requests.post(
                f"{self.server}/v1/portraits", files={"image": (photo.name, handle)}, data=form, timeout=self.timeout
            )
        return self._check(response)

    def status(self, status_url: str) -> dict[str, Any]:
        url = status_url if status_url.startswith("http") else f"{self.server}{status_url}"
        return self._check(requests.get(url, timeout=self.timeout))

    def download(self, url: str) -> bytes:
        response = requests.get(url, timeout=self.timeout)
        if response.status_code != 200:
            raise ApiError(response.status_code, "download_failed", "the portrait could not be downloaded")
        return response.content

    def events_url(self, status_url: str) -> str:
        url = status_url if status_url.startswith("http") else f"{self.server}{status_url}"
        return f"{url}/events"

    def wait(
        self, status_url: str, deadline_seconds: float = 300.0, interval: float = 0.5, *, live: bool = True
    ) -> dict[str, Any]:
        """Wait until done or failed, with a progress bar over the pipeline's stages: from the live progress
        stream, or by polling if it cannot be had (said on stderr)."""
        deadline = time.monotonic() + deadline_seconds
        progress = _Progress()
        try:
            if live:
                try:
                    return self.follow(status_url, progress, deadline)
                except StreamUnavailable as exc:
                    print(f"live progress unavailable ({exc}); polling {status_url} instead", file=sys.stderr)
            return self.poll(status_url, progress, deadline, interval)
        finally:
            progress.close()

    def follow(self, status_url: str, progress: _Progress, deadline: float) -> dict[str, Any]:
        """Follow the job's event stream to its end, resuming with Last-Event-ID when the connection drops."""
        url, last_id, failures = self.events_url(status_url), None, 0
        while True:
            headers = {"Accept": "text/event-stream"} | ({"Last-Event-ID": last_id} if last_id else {})
            try:
                response = requests.get(url, headers=headers, stream=True, timeout=(self.timeout, STREAM_READ_TIMEOUT))
            except requests.RequestException as exc:
                failures += 1
                if failures > STREAM_RECONNECTS:
                    raise StreamUnavailable(f"cannot connect: {type(exc).__name__}") from exc
                time.sleep(min(2.0, 0.5 * failures))
                continue
            with response:
                content_type = response.headers.get("Content-Type", "")
                if response.status_code != 200 or not content_type.startswith("text/event-stream"):
                    raise StreamUnavailable(f"HTTP {response.status_code}, {content_type or 'no content type'}")
                failures = 0
                try:
                    for event in parse_sse(_until(response.iter_lines(decode_unicode=True), deadline)):
                        last_id = event.id or last_id
                        if event.event == "stage":
                            progress.show(event.json()["stage"])
                        elif event.event == "queue_position":
                            progress.show(Stage.QUEUED, event.json()["queue_position"])
                        elif event.event in ("done", "failed"):
                            job: dict[str, Any] = event.json()
                            progress.show(Stage.DONE if job["status"] == "done" else "failed")
                            return job
                        elif event.event == "deleted":
                            raise ApiError(404, "not_found", "the portrait was deleted or has expired")
                except requests.RequestException as exc:  # dropped or silent for 45 s: resume
                    failures += 1
                    if failures > STREAM_RECONNECTS:
                        raise StreamUnavailable(f"lost: {type(exc).__name__}") from exc
                    continue
            if time.monotonic() > deadline:
                raise ApiError(0, "timeout", "the portrait took too long")
            # The stream ended without a final event (the server restarted): resume where it stopped.

    def poll(self, status_url: str, progress: _Progress, deadline: float, interval: float) -> dict[str, Any]:
        while True:
            job = self.status(status_url)
            stage = Stage.DONE if job["status"] == "done" else (job.get("stage") or job["status"])
            progress.show(stage, job.get("queue_position"))
            if job["status"] in ("done", "failed"):
                return job
            if time.monotonic() > deadline:
                raise ApiError(0, "timeout", f"still {job['status']} after the deadline")
            time.sleep(interval)
