"""Do 200 open live-progress streams starve uploads and status reads? (#10). A load script, not a timed test.

    python -m scripts.sse_load                    # starts the real stack (scripts/chaos/stack.py), no workers
    python -m scripts.sse_load --threads 32       # the same with the gateway's old thread count
    python -m scripts.sse_load --url http://127.0.0.1:8080   # a running gateway (keep its jobs queued: no workers)

It uploads `--streams` photos (their jobs stay queued: the stack it starts has no worker), measures upload and
status-read latency, opens one event stream per job and waits until every stream has sent its first event
(each then holds a gunicorn thread), measures again with the streams open, and prints both, the ratio and the
gateway's resident memory (when it started the stack). Uploads and reads run `--clients` at a time, each with a
10 s timeout: one that gets no answer counts as failed, which is what starvation looks like.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import requests

from scripts.chaos.load import percentile

REQUEST_TIMEOUT = 10.0
STREAM_OPEN_TIMEOUT = 30.0


@dataclass
class Sample:
    seconds: list[float] = field(default_factory=list)
    failed: int = 0

    @property
    def p50(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def p99(self) -> float | None:
        return percentile(self.seconds, 99) if self.seconds else None


def timed(call: Callable[[], requests.Response], expected: int, sample: Sample, lock: threading.Lock) -> None:
    started = time.perf_counter()
    try:
        ok = call().status_code == expected
    except requests.RequestException:
        ok = False
    elapsed = time.perf_counter() - started
    with lock:
        if ok:
            sample.seconds.append(elapsed)
        else:
            sample.failed += 1


def measure(
    url: str, photo: bytes, job_ids: list[str], uploads: int, reads: int, clients: int
) -> tuple[Sample, Sample, list[str]]:
    """Upload latency (202), status-read latency (200) and the ids of the new jobs."""
    upload_sample, read_sample, lock, new_ids = Sample(), Sample(), threading.Lock(), []

    def upload() -> requests.Response:
        response = requests.post(f"{url}/v1/portraits", files={"image": ("photo.jpg", photo)}, timeout=REQUEST_TIMEOUT)
        if response.status_code == 202:
            with lock:
                new_ids.append(response.json()["id"])
        return response

    with ThreadPoolExecutor(clients) as pool:
        for _ in range(uploads):
            pool.submit(timed, upload, 202, upload_sample, lock)
    with ThreadPoolExecutor(clients) as pool:
        for n in range(reads):
            job_id = job_ids[n % len(job_ids)]
            pool.submit(
                timed,
                partial(requests.get, f"{url}/v1/portraits/{job_id}", timeout=REQUEST_TIMEOUT),
                200,
                read_sample,
                lock,
            )
    return upload_sample, read_sample, new_ids


class Streams:
    """One thread per event stream, reading it until told to stop; counts streams that sent their first event."""

    def __init__(self, url: str, job_ids: list[str]) -> None:
        self.url, self.job_ids = url, job_ids
        self.first_event = threading.Semaphore(0)
        self.opened = 0
        self.errors = 0
        self.error_kinds: list[str] = []
        self._lock = threading.Lock()
        self._responses: list[requests.Response] = []
        self._threads = [threading.Thread(target=self._follow, args=(job_id,), daemon=True) for job_id in job_ids]

    def _follow(self, job_id: str) -> None:
        try:
            response = requests.get(
                f"{self.url}/v1/portraits/{job_id}/events", stream=True, timeout=(REQUEST_TIMEOUT, 60)
            )
            with self._lock:
                self._responses.append(response)
            first = True
            # One loop over one iterator: leaving a requests line iterator early closes the connection.
            for line in response.iter_lines(decode_unicode=True):
                if first and line.startswith("event:"):
                    first = False
                    with self._lock:
                        self.opened += 1
                    self.first_event.release()
        except (requests.RequestException, AttributeError, ValueError) as exc:
            with self._lock:
                self.errors += 1  # includes the closes at the end
                self.error_kinds.append(type(exc).__name__)

    def open(self) -> float:
        started = time.monotonic()
        for thread in self._threads:
            thread.start()
        deadline = started + STREAM_OPEN_TIMEOUT
        for _ in self.job_ids:
            if not self.first_event.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
        return time.monotonic() - started

    def close(self) -> None:
        with self._lock:
            responses = list(self._responses)
        for response in responses:
            # Shut the socket down under its reader (which then sees EOF): closing the response instead would
            # wait for the reader's lock, i.e. for the next heartbeat, stream after stream.
            connection = response.raw.connection
            if connection is None:  # already handed back to the pool: its stream is over
                continue
            with contextlib.suppress(Exception):
                connection.sock.shutdown(socket.SHUT_RDWR)


def gateway_rss_mib(pid: int | None) -> float | None:
    """Resident memory of the gunicorn master and its workers (Linux /proc), MiB."""
    if pid is None:
        return None
    pids, total = [pid], 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            pids += [int(child) for child in (task / "children").read_text().split()]
    for each in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.0f} ms"


def _ratio(after: float | None, before: float | None) -> str:
    return "—" if not after or not before else f"×{after / before:.2f}"


def report(
    streams: int,
    opened: int,
    open_seconds: float,
    before: tuple[Sample, Sample],
    after: tuple[Sample, Sample],
    rss: tuple[float | None, float | None],
    threads: str,
) -> str:
    rows = [
        f"gateway: 2 workers × {threads} threads; {opened}/{streams} streams sent their first event within "
        f"{open_seconds:.1f} s",
        "",
        "| | upload p50 | upload p99 | status p50 | status p99 | failed (no answer in 10 s or not 2xx) |",
        "|---|---|---|---|---|---|",
    ]
    for label, (uploads, reads) in (("no streams", before), (f"{opened} open streams", after)):
        rows.append(
            f"| {label} | {_ms(uploads.p50)} | {_ms(uploads.p99)} | {_ms(reads.p50)} | {_ms(reads.p99)} "
            f"| {uploads.failed} uploads, {reads.failed} reads |"
        )
    rows.append(
        f"| ratio | {_ratio(after[0].p50, before[0].p50)} | {_ratio(after[0].p99, before[0].p99)} | "
        f"{_ratio(after[1].p50, before[1].p50)} | {_ratio(after[1].p99, before[1].p99)} | |"
    )
    if rss[0] is not None and rss[1] is not None:
        rows += ["", f"gateway resident memory: {rss[0]:.0f} MiB before the streams, {rss[1]:.0f} MiB with them"]
    return "\n".join(rows)


def run(url: str, args: argparse.Namespace, gateway_pid: int | None) -> str:
    from scripts.support import samples

    photo = samples.grace_hopper_path().read_bytes()
    print(f"queueing {args.streams} jobs…", file=sys.stderr)
    _, _, job_ids = measure(url, photo, [], args.streams, 0, args.clients)
    if len(job_ids) < args.streams:
        raise SystemExit(f"only {len(job_ids)} of {args.streams} uploads were accepted")
    print("measuring without streams…", file=sys.stderr)
    before = measure(url, photo, job_ids, args.uploads, args.reads, args.clients)[:2]
    rss_before = gateway_rss_mib(gateway_pid)
    streams = Streams(url, job_ids)
    print(f"opening {args.streams} streams…", file=sys.stderr)
    open_seconds = streams.open()
    print(
        f"{streams.opened} streams open ({streams.errors} failed: {sorted(set(streams.error_kinds))}); "
        "measuring again…",
        file=sys.stderr,
    )
    try:
        after = measure(url, photo, job_ids, args.uploads, args.reads, args.clients)[:2]
        rss_after = gateway_rss_mib(gateway_pid)
        opened = streams.opened
        with contextlib.suppress(requests.RequestException):  # a starved gateway does not answer this either
            metrics = requests.get(f"{url}/metrics", timeout=REQUEST_TIMEOUT).text.splitlines()
            print(
                "\n".join(line for line in metrics if line.startswith("portraits_gateway_event_streams")),
                file=sys.stderr,
            )
    finally:
        streams.close()
    return report(args.streams, opened, open_seconds, before, after, (rss_before, rss_after), str(args.threads or "?"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.sse_load", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running gateway (default: start the stack, without workers)")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--uploads", type=int, default=60, help="uploads per measurement")
    parser.add_argument("--reads", type=int, default=400, help="status reads per measurement")
    parser.add_argument("--clients", type=int, default=4, help="requests in flight during a measurement")
    parser.add_argument("--threads", type=int, help="gateway threads per worker (started stack only)")
    parser.add_argument("--workdir", help="keep the started stack's files (logs) here")
    args = parser.parse_args(argv)
    if args.url:
        print(run(args.url.rstrip("/"), args, None))
        return 0

    from scripts.chaos.stack import ChaosStack
    from shared.settings import Settings

    overrides: dict[str, object] = {"upload_rate_limit": "", "source_max_age_seconds": 1800}
    if args.threads:
        overrides["gateway_threads"] = args.threads
    args.threads = args.threads or Settings.model_fields["gateway_threads"].default
    with (
        contextlib.nullcontext(args.workdir) if args.workdir else tempfile.TemporaryDirectory(prefix="sse-load-")
    ) as workdir:
        print("starting the stack (Redis, SeaweedFS, gateway, janitor; no workers)…", file=sys.stderr)
        with ChaosStack(Path(workdir), workers=0, **overrides) as stack:
            print(run(stack.gateway_url, args, stack.programs["gateway"].process.pid))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
