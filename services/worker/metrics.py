"""Worker metrics. Celery's prefork children each count on their own, so with PROMETHEUS_MULTIPROC_DIR set the
values are shared through files and the main process serves the sum (see `serve_metrics`)."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server
from prometheus_client.metrics_core import Metric

from services.worker.lifecycle import WorkerState

_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_WAIT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

JOBS = Counter(
    "portraits_worker_jobs_total",
    "Jobs finished by this worker, by outcome (done, failed:<code>, skipped).",
    ["outcome"],
)
STAGE_SECONDS = Histogram(
    "portraits_worker_stage_seconds", "Engine stage durations.", ["stage"], buckets=_STAGE_BUCKETS
)
QUEUE_WAIT = Histogram(
    "portraits_worker_queue_wait_seconds", "Upload accepted → render started.", buckets=_WAIT_BUCKETS
)
JOB_SECONDS = Histogram("portraits_worker_job_seconds", "Render started → result stored.", buckets=_WAIT_BUCKETS)
RETRIES = Counter("portraits_worker_retries_total", "Tasks sent back for a retry after a transient error.", ["reason"])
PORTRAITS = Counter(
    "portraits_worker_portraits_total",
    "Portraits painted, by painter (face-gan, style-transfer) and family.",
    ["painter", "family"],
)
# Likeness on real traffic (#21): the face recogniser's distance between each photo and its delivered portrait
# (same person below 0.6; the auto fallback's line is PORTRAITS_LIKENESS_MAX_DISTANCE). The
# identity study's faces are few; this is where a drift of one painter or family shows.
IDENTITY_DISTANCE = Histogram(
    "portraits_worker_identity_distance",
    "Face-recogniser distance between the photo's face and the delivered portrait's, by painter and family.",
    ["painter", "family"],
    buckets=(0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 1.0),
)
GALLERY_PUBLISHED = Counter(
    "portraits_worker_gallery_published_total",
    "Portraits copied to the public gallery with their owner's consent (#10).",
)
GALLERY_PUBLISH_FAILURES = Counter(
    "portraits_worker_gallery_publish_failures_total",
    "Gallery copies that could not be published (storage or Redis failed); the job itself stays done.",
)
BATCH_SIZE = Histogram("portraits_worker_batch_size", "Photos rendered per engine call.", buckets=(1, 2, 4, 8, 16, 32))
# A gauge per state rather than prometheus_client's Enum, which has no multiprocess mode: summed over live
# processes it reads "how many worker processes are in each state".
STATE = Gauge(
    "portraits_worker_processes", "Worker processes by lifecycle state.", ["state"], multiprocess_mode="livesum"
)
QUEUE_DEPTH = Gauge(
    "portraits_worker_queue_depth",
    "Tasks waiting in the broker queue (sampled per task).",
    multiprocess_mode="mostrecent",
)


def set_state(state: WorkerState) -> None:
    for candidate in WorkerState:
        STATE.labels(state=candidate.value).set(1 if candidate is state else 0)


class _ForgetDeadProcesses:
    """A render process killed outright (hard time limit, OOM killer) never reports its exit, so its last
    gauges (typically busy=1) would count until the worker restarts. Before each scrape, forget the files of
    processes that no longer exist; a live process stuck in `failed` is still seen."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def collect(self) -> list[Metric]:
        for path in self._directory.glob("gauge_live*_*.db"):
            pid = int(path.stem.rsplit("_", 1)[1])
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                multiprocess.mark_process_dead(pid, str(self._directory))  # type: ignore[no-untyped-call]  # unannotated in prometheus_client
            except PermissionError:
                pass  # alive, someone else's
        return []


def serve_metrics(port: int, address: str) -> None:
    """Serve /metrics; aggregates across prefork children when multiprocess mode is on. Called in the
    parent before any child is forked, so stale files from a previous run can be cleared first."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        start_http_server(port, addr=address)
        return
    for stale in Path(directory).glob("*.db"):
        stale.unlink()
    registry = CollectorRegistry()
    registry.register(_ForgetDeadProcesses(Path(directory)))  # registered first: runs before the sum
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated in prometheus_client
    start_http_server(port, addr=address, registry=registry)


def mark_process_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # unannotated in prometheus_client
