"""docs/metrics.md is generated from the code's registries and kept current."""

from __future__ import annotations

from scripts import metrics_catalogue


def test_metrics_doc_is_current():
    assert metrics_catalogue.main(["--check"]) == 0, "run: python -m scripts.metrics_catalogue"


def test_catalogue_covers_every_service_and_the_metrics_alerts_rely_on():
    names = {m.name: m for m in metrics_catalogue.catalogue()}
    assert {m.services for m in names.values()} >= {"gateway", "worker", "janitor"}
    for name in (
        "portraits_gateway_requests_total",
        "portraits_gateway_queue_depth",
        "portraits_gateway_jobs_queued",  # the KEDA prometheus trigger's (#24)
        "portraits_worker_processes",
        "portraits_janitor_last_successful_sweep_timestamp_seconds",
        "portraits_source_lifetime_seconds",
    ):
        assert name in names
    assert names["portraits_gateway_requests_total"].labels == ("route", "method", "status")
    assert names["portraits_source_lifetime_seconds"].samples == (
        "portraits_source_lifetime_seconds_bucket",
        "portraits_source_lifetime_seconds_sum",
        "portraits_source_lifetime_seconds_count",
    )
