"""Bounded load for chaos runs: a few clients that upload a photo, poll its status and download the portrait,
one job at a time each, recording every response; a prober that times /healthz; a monitor that samples the
age of the oldest stored source. All of it keeps going through outages (errors are data here)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Self

import requests

from shared.audit import ObjectKind
from shared.deletion import DeletionSchedule

#: A multipart file part as requests takes it: (file name, content, content type).
Upload = tuple[str, bytes, str]

POLL_SECONDS = 0.1
JOB_TIMEOUT_SECONDS = 200.0  # past the source's maximum age: a job still open by then is lost


@dataclass
class JobRecord:
    id: str
    accepted_at: float
    status: str = "open"  # open → done | failed:<code> | lost (vanished or never finished)
    finished_at: float | None = None


@dataclass
class Responses:
    """Every answer the clients got, by status, plus the ones that broke the contract."""

    by_status: Counter[int] = field(default_factory=Counter)
    bad_503: int = 0  # a 503 without our JSON envelope or without Retry-After
    not_json: int = 0  # an error status whose body is not our envelope
    transport_errors: int = 0  # no HTTP answer at all (connection refused, reset, timeout)
    transport_kinds: Counter[str] = field(default_factory=Counter)  # which, by exception and request

    def record(self, response: requests.Response) -> None:
        self.by_status[response.status_code] += 1
        if response.status_code < 400:
            return
        try:
            envelope = response.json()["error"]
            assert envelope["code"] and envelope["message"]
        except (ValueError, KeyError, TypeError, AssertionError):
            self.not_json += 1
            if response.status_code == 503:
                self.bad_503 += 1
            return
        if response.status_code == 503 and not response.headers.get("Retry-After"):
            self.bad_503 += 1

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.by_status.items() if status >= 500 and status != 503)


class Load:
    def __init__(self, base_url: str, photo: bytes, clients: int, pause: float = 0.2) -> None:
        self.base_url = base_url
        self.photo = photo
        self.clients = clients
        self.pause = pause
        self.jobs: list[JobRecord] = []
        self.responses = Responses()
        self.upload_seconds: list[float] = []  # time to an answer for each upload, whatever the answer
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Load:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._client, daemon=True, name=f"load-{n}") for n in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop uploading; clients still follow the job they have open to its end."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=JOB_TIMEOUT_SECONDS + 10)

    def _request(
        self, session: requests.Session, method: str, url: str, files: dict[str, Upload] | None = None
    ) -> requests.Response | None:
        try:
            response = session.request(method, url, timeout=30, files=files)
        except requests.RequestException as exc:
            with self._lock:
                self.responses.transport_errors += 1
                where = "S3" if not url.startswith(self.base_url) else url.removeprefix(self.base_url)[:16]
                self.responses.transport_kinds[f"{method} {where} {type(exc).__name__}"] += 1
            return None
        with self._lock:
            self.responses.record(response)
        return response

    def _client(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            started = time.perf_counter()
            response = self._request(
                session,
                "POST",
                self.base_url + "/v1/portraits",
                files={"image": ("selfie.jpg", self.photo, "image/jpeg")},
            )
            with self._lock:
                self.upload_seconds.append(time.perf_counter() - started)
            if response is not None and response.status_code == 202:
                record = JobRecord(response.json()["id"], time.time())
                with self._lock:
                    self.jobs.append(record)
                self._follow(session, record)
            elif response is not None and response.status_code in (429, 503):
                retry_after = float(response.headers.get("Retry-After", "1") or 1)
                self._stop.wait(min(retry_after, 2.0))
            else:
                self._stop.wait(0.5)
            self._stop.wait(self.pause)

    def _follow(self, session: requests.Session, record: JobRecord) -> None:
        url = f"{self.base_url}/v1/portraits/{record.id}"
        while time.time() - record.accepted_at < JOB_TIMEOUT_SECONDS:
            response = self._request(session, "GET", url)
            if response is not None and response.status_code == 404:
                record.status = "lost"  # an accepted job must never vanish before it ends
                break
            if response is not None and response.status_code == 200:
                body = response.json()
                if body["status"] == "done":
                    record.status, record.finished_at = "done", time.time()
                    self._request(session, "GET", body["result_url"])
                    break
                if body["status"] == "failed":
                    record.status, record.finished_at = f"failed:{body['error']['code']}", time.time()
                    break
            time.sleep(POLL_SECONDS)
        else:
            record.status = "lost"


class _Background:
    """A daemon thread running `_run` until `stop()`."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        raise NotImplementedError


class Prober(_Background):
    """GET /healthz every `interval` seconds; latencies in seconds (a timeout counts as its full length)."""

    def __init__(self, base_url: str, interval: float = 0.05, timeout: float = 5.0) -> None:
        super().__init__("healthz-prober")
        self.url = base_url + "/healthz"
        self.interval = interval
        self.timeout = timeout
        self.latencies: list[float] = []
        self.failures = 0

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.wait(self.interval):
            started = time.perf_counter()
            try:
                ok = session.get(self.url, timeout=self.timeout).status_code == 200
            except requests.RequestException:
                ok = False
            self.latencies.append(time.perf_counter() - started)
            self.failures += not ok


class SourceAgeMonitor(_Background):
    """The age of the oldest source still stored, sampled every second (Redis may be away: skipped then)."""

    def __init__(self, schedule: DeletionSchedule) -> None:
        super().__init__("source-age")
        self._schedule = schedule
        self.oldest = 0.0

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            with contextlib.suppress(Exception):
                created = self._schedule.oldest_created(ObjectKind.SOURCE)
                if created is not None:
                    self.oldest = max(self.oldest, time.time() - created)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True)
