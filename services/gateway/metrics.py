"""Prometheus metrics of the gateway.

Gunicorn runs several worker processes: when `PROMETHEUS_MULTIPROC_DIR` is set (prometheus_client reads it at
import to store values in per-process files), /metrics aggregates those files with `MultiProcessCollector`, and
gunicorn_conf.py marks dead workers. The queue depth is read from Redis at scrape time, not stored.

Requests are labelled by the URL rule (`/v1/portraits/<id>`), never the raw path: ids must not become labels.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

PREFIX = "portraits_gateway_"
UNMATCHED_ROUTE = "<unmatched>"

REQUESTS = Counter(
    f"{PREFIX}requests_total", "HTTP requests by route (URL rule), method and status.", ["route", "method", "status"]
)
LATENCY = Histogram(
    f"{PREFIX}request_duration_seconds",
    "Time to answer an HTTP request, by route and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
UPLOAD_BYTES = Histogram(
    f"{PREFIX}upload_bytes", "Size of the uploaded image file parts.", buckets=tuple(2**n for n in range(14, 26))
)  # 16 KiB … 32 MiB
REJECTIONS = Counter(f"{PREFIX}rejections_total", "Error responses, by error code.", ["code"])
ENQUEUED = Counter(f"{PREFIX}jobs_enqueued_total", "Render jobs created and queued.")
ERASED = Counter(f"{PREFIX}jobs_erased_total", "Jobs erased at their owner's request (DELETE).")
# The write guarantee (#24): uploads refused because `redis_wait_replicas` replicas did not confirm their job.
UNREPLICATED_UPLOADS = Counter(
    f"{PREFIX}unreplicated_uploads_total",
    "Uploads undone and refused (503 `unavailable`) because fewer than `redis_wait_replicas` Redis replicas "
    "confirmed their job within `redis_wait_timeout_ms`: a failover in that moment could have lost it.",
)
# Live progress (#10): each open stream holds a gunicorn thread, so this is what `gateway_threads` must cover.
EVENT_STREAMS_OPEN = Gauge(
    f"{PREFIX}event_streams_open",
    "Live-progress (SSE) streams open now, each holding a thread.",
    multiprocess_mode="livesum",
)
EVENT_STREAMS = Counter(
    f"{PREFIX}event_streams_total",
    "Live-progress streams closed, by how: `ended` (the job "
    "ended), `client_gone`, `shutdown` (the worker stopped), `redis_error`.",
    ["outcome"],
)
# Load shedding (#11): what a new upload would wait, and the uploads refused because it was too long.
UPLOADS_SHED = Counter(
    f"{PREFIX}uploads_shed_total",
    "Uploads refused with 503 `overloaded`: their estimated "
    "queue wait plus one render would have outlasted `shed_wait_fraction` of the photo's "
    "maximum age.",
)
UPLOAD_WAIT_ESTIMATE = Histogram(
    f"{PREFIX}upload_wait_estimate_seconds",
    "Estimated queue wait a new upload "
    "faced (jobs ahead of it at the render processes' pooled rate), shed uploads "
    "included; not observed while no render process reports.",
    buckets=(0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0),
)
GALLERY_WITHDRAWN = Counter(
    f"{PREFIX}gallery_withdrawn_total",
    "Gallery entries withdrawn with their token (DELETE /v1/gallery/<id>), before or after publication.",
)


def multiprocess_dir() -> str | None:
    # Not app configuration: prometheus_client's own switch, which it has already read at import.
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class QueueDepthCollector:
    """Reads the broker's queue length and the jobs not yet started when scraped; a Redis outage drops the
    samples, not the scrape."""

    def __init__(self, depth: Callable[[], int], queued_jobs: Callable[[], int]) -> None:
        self._depth = depth
        self._queued_jobs = queued_jobs

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(f"{PREFIX}queue_depth", "Render tasks waiting in the broker queue.")
        # What autoscaling should count (#24): every job not yet started, including those whose task a worker has
        # reserved but not begun (kombu's `unacked`) and those whose message a failover lost (until resent).
        queued = GaugeMetricFamily(
            f"{PREFIX}jobs_queued", "Jobs accepted and not yet started (the job store's queue index)."
        )
        try:
            depth.add_metric([], self._depth())
            queued.add_metric([], self._queued_jobs())
        except Exception:
            return
        yield depth
        yield queued


class _ProcessRegistry:
    """The process's default registry, as a collector we can add to a per-scrape registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def render(queue_depth: Callable[[], int], queued_jobs: Callable[[], int]) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    if multiprocess_dir():
        # prometheus_client's multiprocess module has no annotations (#12).
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ProcessRegistry())
    registry.register(QueueDepthCollector(queue_depth, queued_jobs))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def route_label() -> str:
    return request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE


def instrument(app: Flask) -> None:
    """Count and time every request, errors included (our error handlers turn them all into responses)."""

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.pop("request_started", None)
        route = route_label()
        REQUESTS.labels(route=route, method=request.method, status=str(response.status_code)).inc()
        if started is not None:
            LATENCY.labels(route=route, method=request.method).observe(time.perf_counter() - started)
        return response
