"""Janitor metrics (one process; lifetimes come from `shared.deletion`, labelled by deleter)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELETIONS = Counter(
    "portraits_janitor_deletions_total", "Objects the janitor deleted and verified.", ["kind", "reason"]
)
FAILURES = Counter(
    "portraits_janitor_deletion_failures_total",
    "Deletions that failed or could not be verified (retried on a later sweep).",
    ["kind"],
)
OLDEST_SOURCE_AGE = Gauge("portraits_janitor_oldest_source_age_seconds", "Age of the oldest source still stored.")
OVERDUE = Gauge("portraits_janitor_overdue_objects", "Objects still stored past their maximum age, by kind.", ["kind"])
SWEEP_SECONDS = Histogram(
    "portraits_janitor_sweep_duration_seconds",
    "Duration of one sweep of the deletion schedule.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LAST_SWEEP = Gauge(
    "portraits_janitor_last_successful_sweep_timestamp_seconds",
    "When the last sweep finished without an error reaching the schedule (Unix time).",
)
RECONCILE_SECONDS = Histogram(
    "portraits_janitor_reconcile_duration_seconds",
    "Duration of one reconciliation pass.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
ORPHANS = Counter(
    "portraits_janitor_orphans_found_total", "Objects found in a bucket but missing from the schedule.", ["kind"]
)
RESCUES = Counter(
    "portraits_janitor_rescues_total",
    "Jobs sent again because their render process stopped renewing its lease (killed, OOM, node lost: issue 9).",
)
RESENT = Counter(
    "portraits_janitor_resent_total",
    "Queued jobs sent again because their message was neither waiting in the queue nor reserved by a worker "
    "(lost with a Redis failover, or with a consumer that died holding it: #24).",
)
WEBHOOK_DELIVERIES = Counter(
    "portraits_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: delivered "
    "(2xx), retried (failed, another attempt scheduled), gave_up (the last attempt "
    "failed), refused (the URL now resolves to a non-public address, or its port is no longer allowed: not "
    "retried).",
    ["outcome"],
)
WEBHOOK_PENDING = Gauge(
    "portraits_webhook_pending", "Webhook deliveries waiting in the outbox (due or scheduled for a retry)."
)
