"""`portraits janitor report`: what the audit proves — counts per kind and deleter, lifetimes, overdue now."""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict

from shared.audit import AuditEntry, AuditLog, ObjectKind
from shared.deletion import DeletionSchedule
from shared.settings import Settings


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def build_report(
    entries: list[AuditEntry], schedule: DeletionSchedule, max_ages: dict[ObjectKind, float], now: float | None = None
) -> str:
    now = time.time() if now is None else now
    lines = [f"audit records: {len(entries)} (unverified: {sum(not e.verified for e in entries)})", ""]
    counts = Counter((entry.kind.value, entry.deleted_by.value) for entry in entries)
    lines.append(f"{'kind':<8}{'deleted by':<12}{'count':>7}")
    for (kind, deleter), count in sorted(counts.items()):
        lines.append(f"{kind:<8}{deleter:<12}{count:>7}")
    lines += ["", f"{'lifetime (s)':<14}{'count':>7}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}"]
    lifetimes: dict[str, list[float]] = defaultdict(list)
    for entry in entries:
        lifetimes[entry.kind.value].append(entry.lifetime)
    for kind in ObjectKind:
        values = sorted(lifetimes.get(kind.value, []))
        if values:
            lines.append(
                f"{kind.value:<14}{len(values):>7}{percentile(values, 50):>9.2f}"
                f"{percentile(values, 90):>9.2f}{percentile(values, 99):>9.2f}{values[-1]:>9.2f}"
            )
        else:
            lines.append(f"{kind.value:<14}{0:>7}" + f"{'-':>9}" * 4)
    lines += [
        "",
        "overdue now (older than their maximum age, still stored): "
        + ", ".join(f"{kind.value} {schedule.overdue(kind, now, max_ages[kind])}" for kind in ObjectKind),
    ]
    return "\n".join(lines)


def max_ages(settings: Settings) -> dict[ObjectKind, float]:
    return {
        ObjectKind.SOURCE: settings.source_max_age_seconds,
        ObjectKind.RESULT: settings.result_ttl_seconds,
        ObjectKind.GALLERY: settings.gallery_ttl_seconds,
    }


def main() -> int:
    from shared.backends import redis_client
    from shared.settings import get_settings

    settings = get_settings()
    client = redis_client(settings)
    entries = AuditLog(client, settings.audit_max_entries).entries()
    print(build_report(entries, DeletionSchedule(client), max_ages(settings)))
    return 0
