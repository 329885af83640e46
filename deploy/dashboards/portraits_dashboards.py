"""The AI Portraits Grafana dashboards, as code (grafanalib).

Three dashboards: overview (traffic, latency, queue, workers, failures), privacy (how long photos and
portraits live, who deleted them, the janitor's health) and worker (stages, batches, queue wait, GPU).
`generate.py` beside this file writes them as JSON for docker compose and as ConfigMaps for Kubernetes;
tests/deploy checks that every query parses and names only metrics the services export.

Every panel queries the `datasource` variable, so the same JSON works with any Prometheus data source.

Long on purpose: three dashboards, each a list of panels that are mostly literal queries and
prose; one file keeps each query beside its siblings and the helpers they share.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import attr
from grafanalib.core import (
    Dashboard,
    GridPos,
    RowPanel,
    Stat,
    Target,
    Template,
    Templating,
    Time,
    TimeSeries,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"  # Grafana's rate window: at least four scrape intervals
TAGS = ["portraits"]
SOURCE_MAX_AGE_S = 120  # PORTRAITS_SOURCE_MAX_AGE_SECONDS (the alert rules use the same figure)
SHED_LIMIT_S = 84  # wait + one render past which uploads are shed: PORTRAITS_SHED_WAIT_FRACTION 0.7 × 120 s (#11)
# Outcomes that are the photo's doing, not ours (see JobFailureRateHigh in deploy/prometheus/rules).
USER_FAILURES = "|".join(
    (
        "no_face",
        "face_too_small",
        "corrupt_image",
        "unsupported_type",
        "image_too_small",
        "image_too_large",
        "unknown_style",
        "invalid_strength",
    )
)


# ------------------------------------------------------------------------------------------------ helpers


def quantile(q: float, metric: str, by: str = "", selector: str = "") -> str:
    """The q-quantile of a histogram over the rate window, optionally per label(s) `by`."""
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket{selector}[{RATE}])))"


def target(expr: str, legend: str = "", ref: str = "A") -> Target:
    return Target(expr=expr, legendFormat=legend, refId=ref, datasource=DATASOURCE)


def targets(*pairs: tuple[str, str]) -> list[Target]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


@dataclass(frozen=True)
class Cell:
    """A panel and its width (of 24 columns); `layout` places cells left to right, row by row."""

    panel: Any
    width: int = 12
    height: int = 8


def timeseries(
    title: str,
    description: str,
    series: Sequence[tuple[str, str]],
    unit: str = "short",
    width: int = 12,
    stacking: bool = False,
    thresholds: Sequence[float] = (),
) -> Cell:
    """A time series panel; `thresholds` draw red dashed lines (e.g. the photos' maximum age)."""
    panel = TimeSeries(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=targets(*series),
        unit=unit,
        stacking={"mode": "normal", "group": "A"} if stacking else {},
        legendDisplayMode="list",
        tooltipMode="multi",
        thresholds=[{"color": "green", "value": None}, *({"color": "red", "value": v} for v in thresholds)],
        thresholdsStyleMode="dashed" if thresholds else "off",
        maxDataPoints=None,  # Grafana's default: one point per pixel
    )
    return Cell(panel, width)


def stat(
    title: str, description: str, expr: str, unit: str = "short", width: int = 4, red_above: float | None = None
) -> Cell:
    steps: list[dict[str, str | float | None]] = [{"color": "green", "value": None}]
    if red_above is not None:
        steps.append({"color": "red", "value": red_above})
    panel = Stat(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=[target(expr)],
        format=unit,
        reduceCalc="lastNotNull",
        graphMode="area",
        thresholds=steps,
        maxDataPoints=None,
    )
    return Cell(panel, width, height=4)


def layout(sections: Iterable[tuple[str, Sequence[Cell]]]) -> list[object]:
    """Rows of cells, each headed by a row panel, placed left to right on Grafana's 24-column grid."""
    panels: list[object] = []
    y = 0
    for title, cells in sections:
        panels.append(RowPanel(title=title, gridPos=GridPos(h=1, w=24, x=0, y=y)))
        y += 1
        x = row_height = 0
        for cell in cells:
            if x + cell.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(attr.evolve(cell.panel, gridPos=GridPos(h=cell.height, w=cell.width, x=x, y=y)))
            x += cell.width
            row_height = max(row_height, cell.height)
        y += row_height
    return panels


def dashboard(uid: str, title: str, description: str, sections: Iterable[tuple[str, Sequence[Cell]]]) -> Dashboard:
    return Dashboard(
        uid=uid,
        title=title,
        description=description,
        tags=TAGS,
        timezone="utc",
        refresh="30s",
        time=Time("now-3h", "now"),
        graphTooltip=1,  # shared crosshair
        templating=Templating(
            list=[
                Template(
                    name="datasource", label="Data source", type="datasource", query="prometheus", default="Prometheus"
                ),
            ]
        ),
        panels=layout(sections),
    ).auto_panel_ids()


# ------------------------------------------------------------------------------------------- dashboards

GATEWAY_ROUTES = '{route!="/metrics"}'
FAILED = 'outcome=~"failed:.*"'
OURS_FAILURE_RATIO = (
    f'sum(rate(portraits_worker_jobs_total{{{FAILED}, outcome!~"failed:({USER_FAILURES})"}}[{RATE}]))'
    f" / sum(rate(portraits_worker_jobs_total[{RATE}]))"
)
# Deleted photos that had lived past the maximum age (`le` is "120.0" as the Python client writes it).
OUTLIVED_PER_HOUR = (
    "sum(increase(portraits_source_lifetime_seconds_count[1h]))"
    f' - sum(increase(portraits_source_lifetime_seconds_bucket{{le=~"{SOURCE_MAX_AGE_S}(\\\\.0)?"}}[1h]))'
)
BATCH_MEAN = (
    f"sum(rate(portraits_worker_batch_size_sum[{RATE}])) / sum(rate(portraits_worker_batch_size_count[{RATE}]))"
)


def overview() -> Dashboard:
    return dashboard(
        "portraits-overview",
        "AI Portraits / Overview",
        "Traffic, latency, the render queue, workers and failures.",
        [
            (
                "Now",
                [
                    stat(
                        "Uploads",
                        "Render jobs created per second.",
                        "sum(rate(portraits_gateway_jobs_enqueued_total[5m]))",
                        unit="reqps",
                    ),
                    stat(
                        "Portraits done",
                        "Jobs finished with a portrait, per second.",
                        'sum(rate(portraits_worker_jobs_total{outcome="done"}[5m]))',
                        unit="reqps",
                    ),
                    stat(
                        "Queue",
                        "Render tasks waiting in the broker.",
                        "max(portraits_gateway_queue_depth)",
                        red_above=20,
                    ),
                    stat(
                        "Workers",
                        "Worker processes ready or rendering.",
                        'sum(portraits_worker_processes{state=~"ready|busy"}) or vector(0)',
                    ),
                    stat(
                        "5xx",
                        "Share of gateway responses that are server errors (5 min).",
                        'sum(rate(portraits_gateway_requests_total{status=~"5.."}[5m]))'
                        " / sum(rate(portraits_gateway_requests_total[5m]))",
                        unit="percentunit",
                        red_above=0.05,
                    ),
                    stat(
                        "Oldest photo",
                        f"Age of the oldest uploaded photo still stored (limit {SOURCE_MAX_AGE_S} s).",
                        "max(portraits_janitor_oldest_source_age_seconds)",
                        unit="s",
                        red_above=SOURCE_MAX_AGE_S,
                    ),
                ],
            ),
            (
                "Gateway",
                [
                    timeseries(
                        "Requests by route",
                        "HTTP requests per second, by URL rule and method.",
                        [
                            (
                                f"sum by (route, method) "
                                f"(rate(portraits_gateway_requests_total{GATEWAY_ROUTES}[{RATE}]))",
                                "{{method}} {{route}}",
                            )
                        ],
                        unit="reqps",
                    ),
                    timeseries(
                        "Responses by status",
                        "HTTP responses per second, by status code.",
                        [
                            (
                                f"sum by (status) (rate(portraits_gateway_requests_total{GATEWAY_ROUTES}[{RATE}]))",
                                "{{status}}",
                            )
                        ],
                        unit="reqps",
                        stacking=True,
                    ),
                    timeseries(
                        "Latency p50 / p99 by route",
                        "Time to answer, by URL rule.",
                        [
                            (
                                quantile(0.5, "portraits_gateway_request_duration_seconds", "route", GATEWAY_ROUTES),
                                "p50 {{route}}",
                            ),
                            (
                                quantile(0.99, "portraits_gateway_request_duration_seconds", "route", GATEWAY_ROUTES),
                                "p99 {{route}}",
                            ),
                        ],
                        unit="s",
                    ),
                    timeseries(
                        "Refusals by code",
                        "Error responses by error code (the JSON envelope's `code`).",
                        [(f"sum by (code) (rate(portraits_gateway_rejections_total[{RATE}]))", "{{code}}")],
                        unit="reqps",
                        stacking=True,
                    ),
                ],
            ),
            (
                "Queue and workers",
                [
                    timeseries(
                        "Queue depth",
                        "Render tasks waiting in the broker (read from Redis at scrape).",
                        [("max(portraits_gateway_queue_depth)", "waiting")],
                    ),
                    timeseries(
                        "Worker processes by state",
                        "starting → loading → ready ⇄ busy; failed never renders.",
                        [("sum by (state) (portraits_worker_processes)", "{{state}}")],
                        stacking=True,
                    ),
                    timeseries(
                        "Upload to portrait",
                        "Queue wait (upload accepted → render started) and render time "
                        "(render started → result stored).",
                        [
                            (quantile(0.5, "portraits_worker_queue_wait_seconds"), "queue wait p50"),
                            (quantile(0.99, "portraits_worker_queue_wait_seconds"), "queue wait p99"),
                            (quantile(0.5, "portraits_worker_job_seconds"), "render p50"),
                            (quantile(0.99, "portraits_worker_job_seconds"), "render p99"),
                        ],
                        unit="s",
                    ),
                    timeseries(
                        "Job outcomes",
                        "Jobs finished per second: done, skipped (erased meanwhile), failed.",
                        [
                            (
                                f'sum by (outcome) (rate(portraits_worker_jobs_total{{outcome!~"failed:.*"}}[{RATE}]))',
                                "{{outcome}}",
                            ),
                            (f"sum(rate(portraits_worker_jobs_total{{{FAILED}}}[{RATE}]))", "failed"),
                        ],
                        unit="reqps",
                        stacking=True,
                    ),
                ],
            ),
            (
                "Load shedding (#11)",
                [
                    timeseries(
                        "Uploads accepted and shed",
                        "Uploads queued, and uploads refused with 503 `overloaded` "
                        "because they could not have been painted before their photo's maximum age.",
                        [
                            (f"sum(rate(portraits_gateway_jobs_enqueued_total[{RATE}]))", "accepted"),
                            (f"sum(rate(portraits_gateway_uploads_shed_total[{RATE}]))", "shed"),
                        ],
                        unit="reqps",
                        stacking=True,
                    ),
                    timeseries(
                        "Estimated wait of a new upload",
                        f"The queue ahead of each upload at the render "
                        f"processes' pooled rate; an upload is shed when this plus one render passes "
                        f"{SHED_LIMIT_S} s (the line).",
                        [
                            (quantile(0.5, "portraits_gateway_upload_wait_estimate_seconds"), "p50"),
                            (quantile(0.99, "portraits_gateway_upload_wait_estimate_seconds"), "p99"),
                        ],
                        unit="s",
                        thresholds=[SHED_LIMIT_S],
                    ),
                ],
            ),
            (
                "Failures",
                [
                    timeseries(
                        "Job failures by code",
                        "Failed jobs per second by the engine's code. Ours: timeout, "
                        "source_expired, unavailable, engine_error; the photo's: no_face, face_too_small…",
                        [(f"sum by (outcome) (rate(portraits_worker_jobs_total{{{FAILED}}}[{RATE}]))", "{{outcome}}")],
                        unit="reqps",
                        stacking=True,
                    ),
                    timeseries(
                        "Failure ratio (ours)",
                        "Share of jobs failing for reasons that are not the photo's.",
                        [(OURS_FAILURE_RATIO, "ours")],
                        unit="percentunit",
                        thresholds=[0.05],
                    ),
                ],
            ),
        ],
    )


def privacy() -> Dashboard:
    lifetime = "portraits_source_lifetime_seconds"
    return dashboard(
        "portraits-privacy",
        "AI Portraits / Privacy",
        f"How long uploaded photos and portraits live, who deleted them, and the janitor that enforces the "
        f"{SOURCE_MAX_AGE_S} s maximum age of photos.",
        [
            (
                "Photos (sources)",
                [
                    timeseries(
                        "Oldest photo still stored",
                        f"Age of the oldest uploaded photo; the red line is the {SOURCE_MAX_AGE_S} s maximum age.",
                        [("max(portraits_janitor_oldest_source_age_seconds)", "oldest")],
                        unit="s",
                        thresholds=[SOURCE_MAX_AGE_S],
                    ),
                    timeseries(
                        "Photo lifetime by deleter",
                        "Upload stored → photo deleted, p50 and max bucket, by who "
                        "deleted it (worker after rendering, janitor at max age, user erasure).",
                        [
                            (quantile(0.5, lifetime, "deleted_by"), "p50 {{deleted_by}}"),
                            (quantile(0.99, lifetime, "deleted_by"), "p99 {{deleted_by}}"),
                        ],
                        unit="s",
                        thresholds=[SOURCE_MAX_AGE_S],
                    ),
                    timeseries(
                        "Photos deleted by deleter",
                        "Photos deleted per second, by who deleted them.",
                        [(f"sum by (deleted_by) (rate({lifetime}_count[{RATE}]))", "{{deleted_by}}")],
                        unit="reqps",
                        stacking=True,
                    ),
                    timeseries(
                        "Photos that outlived their maximum age",
                        f"Deleted photos that had lived longer than {SOURCE_MAX_AGE_S} s, per hour. Must stay at zero.",
                        [(OUTLIVED_PER_HOUR, "outlived")],
                        thresholds=[1],
                    ),
                ],
            ),
            (
                "Portraits (results)",
                [
                    timeseries(
                        "Portrait lifetime by deleter",
                        "Portrait stored → deleted: the janitor at the TTL, or the user's DELETE.",
                        [
                            (quantile(0.5, "portraits_result_lifetime_seconds", "deleted_by"), "p50 {{deleted_by}}"),
                            (quantile(0.99, "portraits_result_lifetime_seconds", "deleted_by"), "p99 {{deleted_by}}"),
                        ],
                        unit="s",
                    ),
                    timeseries(
                        "Erasures on request",
                        "Jobs erased by their owner (DELETE /v1/portraits/<id>).",
                        [(f"sum(rate(portraits_gateway_jobs_erased_total[{RATE}]))", "erased")],
                        unit="reqps",
                    ),
                ],
            ),
            (
                "Gallery (shared with consent, #10)",
                [
                    timeseries(
                        "Gallery copy lifetime by deleter",
                        "Copy published → deleted: the janitor at the "
                        "gallery TTL (30 days), or its owner's withdraw token.",
                        [
                            (quantile(0.5, "portraits_gallery_lifetime_seconds", "deleted_by"), "p50 {{deleted_by}}"),
                            (quantile(0.99, "portraits_gallery_lifetime_seconds", "deleted_by"), "p99 {{deleted_by}}"),
                        ],
                        unit="s",
                    ),
                    timeseries(
                        "Published, withdrawn, failed",
                        "Copies published by the workers, withdrawn with "
                        "their token, and publications that failed (the job itself stays done).",
                        [
                            (f"sum(rate(portraits_worker_gallery_published_total[{RATE}]))", "published"),
                            (f"sum(rate(portraits_gateway_gallery_withdrawn_total[{RATE}]))", "withdrawn"),
                            (f"sum(rate(portraits_worker_gallery_publish_failures_total[{RATE}]))", "failed"),
                        ],
                        unit="reqps",
                    ),
                ],
            ),
            (
                "Janitor",
                [
                    timeseries(
                        "Overdue objects",
                        "Scheduled objects past their deadline, by kind (claimed ones are hidden while leased).",
                        [("max by (kind) (portraits_janitor_overdue_objects)", "{{kind}}")],
                    ),
                    timeseries(
                        "Deletions and failures",
                        "Objects the janitor deleted and verified, by kind and "
                        "reason; failures are retried with backoff.",
                        [
                            (
                                f"sum by (kind, reason) (rate(portraits_janitor_deletions_total[{RATE}]))",
                                "{{kind}} {{reason}}",
                            ),
                            (
                                f"sum by (kind) (rate(portraits_janitor_deletion_failures_total[{RATE}]))",
                                "failed {{kind}}",
                            ),
                        ],
                        unit="reqps",
                    ),
                    timeseries(
                        "Since the last good sweep",
                        "Seconds since a sweep last finished without errors (alert at 60 s).",
                        [("time() - max(portraits_janitor_last_successful_sweep_timestamp_seconds)", "seconds")],
                        unit="s",
                        thresholds=[60],
                    ),
                    timeseries(
                        "Sweep and reconcile duration",
                        "p99 of one sweep of the schedule and of one reconciliation pass over the buckets.",
                        [
                            (quantile(0.99, "portraits_janitor_sweep_duration_seconds"), "sweep p99"),
                            (quantile(0.99, "portraits_janitor_reconcile_duration_seconds"), "reconcile p99"),
                        ],
                        unit="s",
                    ),
                    timeseries(
                        "Orphans found",
                        "Objects in a bucket the schedule never saw (a crash between write and scheduling), per hour.",
                        [("sum by (kind) (increase(portraits_janitor_orphans_found_total[1h]))", "{{kind}}")],
                    ),
                ],
            ),
        ],
    )


def worker() -> Dashboard:
    return dashboard(
        "portraits-worker",
        "AI Portraits / Worker",
        "The render pipeline: stage durations, batches, queue wait, retries and the GPUs.",
        [
            (
                "Pipeline",
                [
                    timeseries(
                        "Stage duration p50",
                        "decode → detect → frame → select → generate → finish.",
                        [(quantile(0.5, "portraits_worker_stage_seconds", "stage"), "{{stage}}")],
                        unit="s",
                        stacking=True,
                    ),
                    timeseries(
                        "Stage duration p95",
                        "The slow tail of each stage.",
                        [(quantile(0.95, "portraits_worker_stage_seconds", "stage"), "{{stage}}")],
                        unit="s",
                    ),
                    timeseries(
                        "Render time",
                        "Render started → result stored (soft limit 60 s, hard 90 s).",
                        [
                            (quantile(0.5, "portraits_worker_job_seconds"), "p50"),
                            (quantile(0.95, "portraits_worker_job_seconds"), "p95"),
                            (quantile(0.99, "portraits_worker_job_seconds"), "p99"),
                        ],
                        unit="s",
                    ),
                    timeseries(
                        "Batch size",
                        "Photos per engine call: mean and p95.",
                        [(BATCH_MEAN, "mean"), (quantile(0.95, "portraits_worker_batch_size"), "p95")],
                    ),
                ],
            ),
            (
                "Painters",
                [
                    timeseries(
                        "Portraits by painter",
                        "Painted by the face GAN or by style transfer, per family: auto "
                        "selection falls back to style transfer where the likeness check fails.",
                        [
                            (
                                f"sum by (painter, family) (rate(portraits_worker_portraits_total[{RATE}]))",
                                "{{painter}} {{family}}",
                            )
                        ],
                        unit="reqps",
                        stacking=True,
                    ),
                    timeseries(
                        "Likeness: photo to portrait",
                        "Face-recogniser distance between each photo and its delivered portrait, p50 and p90 "
                        "by painter and family (#21). Below 0.6 the recogniser takes them for the same person; "
                        "above 0.55 a face-GAN portrait the system chose is repainted by style transfer.",
                        [
                            (
                                quantile(0.5, "portraits_worker_identity_distance", by="painter, family"),
                                "p50 {{painter}} {{family}}",
                            ),
                            (
                                quantile(0.9, "portraits_worker_identity_distance", by="painter, family"),
                                "p90 {{painter}} {{family}}",
                            ),
                        ],
                        thresholds=[0.55, 0.6],
                    ),
                ],
            ),
            (
                "Queue",
                [
                    timeseries(
                        "Queue wait",
                        f"Upload accepted → render started; past {SOURCE_MAX_AGE_S} s the photo "
                        "is gone and the job fails with source_expired.",
                        [
                            (quantile(0.5, "portraits_worker_queue_wait_seconds"), "p50"),
                            (quantile(0.95, "portraits_worker_queue_wait_seconds"), "p95"),
                            (quantile(0.99, "portraits_worker_queue_wait_seconds"), "p99"),
                        ],
                        unit="s",
                        thresholds=[SOURCE_MAX_AGE_S],
                    ),
                    timeseries(
                        "Queue depth",
                        "Waiting tasks: read by the gateway at scrape time, and sampled by the workers at each task.",
                        [
                            ("max(portraits_gateway_queue_depth)", "gateway"),
                            ("max(portraits_worker_queue_depth)", "worker sample"),
                        ],
                    ),
                    timeseries(
                        "Throughput",
                        "Jobs finished per second, by outcome.",
                        [(f"sum by (outcome) (rate(portraits_worker_jobs_total[{RATE}]))", "{{outcome}}")],
                        unit="reqps",
                        stacking=True,
                    ),
                    timeseries(
                        "Retries by reason",
                        "Tasks sent back after a transient S3/Redis error.",
                        [(f"sum by (reason) (rate(portraits_worker_retries_total[{RATE}]))", "{{reason}}")],
                        unit="reqps",
                    ),
                ],
            ),
            (
                "Processes and GPUs",
                [
                    timeseries(
                        "Worker processes by state",
                        "Per state, summed over live processes.",
                        [("sum by (state) (portraits_worker_processes)", "{{state}}")],
                        stacking=True,
                    ),
                    timeseries(
                        "GPU utilisation",
                        "From NVIDIA's DCGM exporter (the GPU operator runs it); empty where it is not scraped.",
                        [("avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL)", "{{Hostname}} gpu {{gpu}}")],
                        unit="percent",
                    ),
                    timeseries(
                        "GPU memory used",
                        "Framebuffer memory in use (DCGM exporter, MiB).",
                        [("sum by (Hostname, gpu) (DCGM_FI_DEV_FB_USED)", "{{Hostname}} gpu {{gpu}}")],
                        unit="decmbytes",
                    ),
                    timeseries(
                        "GPU power",
                        "Board power draw (DCGM exporter).",
                        [("sum by (Hostname, gpu) (DCGM_FI_DEV_POWER_USAGE)", "{{Hostname}} gpu {{gpu}}")],
                        unit="watt",
                    ),
                ],
            ),
        ],
    )


DASHBOARDS = {"portraits-overview": overview, "portraits-privacy": privacy, "portraits-worker": worker}
# Metrics the dashboards read that no service of ours exports (tests/deploy allows exactly these).
EXTERNAL_METRICS = {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE"}
