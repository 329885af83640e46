"""`portraits janitor report` figures, computed from audit records."""

from __future__ import annotations

from services.janitor.report import build_report
from shared.audit import AuditEntry, Deleter, ObjectKind


class FakeSchedule:
    """Only `overdue` is read by the report; the schedule itself is tested against real Redis."""

    def overdue(self, kind: ObjectKind, now: float, max_age: float) -> int:
        return {ObjectKind.SOURCE: 0, ObjectKind.RESULT: 2, ObjectKind.GALLERY: 0}[kind]


def entry(kind: ObjectKind, lifetime: float, by: Deleter) -> AuditEntry:
    return AuditEntry(
        job_id="j",
        kind=kind,
        created_at=100.0,
        deleted_at=100.0 + lifetime,
        deleted_by=by,
        reason="done",
        verified=True,
    )


def test_counts_lifetimes_and_overdue():
    entries = [entry(ObjectKind.SOURCE, float(s), Deleter.WORKER) for s in range(1, 100)]
    entries += [entry(ObjectKind.SOURCE, 119.0, Deleter.JANITOR), entry(ObjectKind.RESULT, 1800.0, Deleter.USER)]
    max_ages = {ObjectKind.SOURCE: 120.0, ObjectKind.RESULT: 1800.0, ObjectKind.GALLERY: 2592000.0}
    report = build_report(entries, FakeSchedule(), max_ages, now=0.0)
    assert "audit records: 101 (unverified: 0)" in report
    assert "source  worker           99" in report and "source  janitor           1" in report
    source_row = next(line for line in report.splitlines() if line.startswith("source ") and "." in line)
    count, p50, p90, p99, maximum = source_row.split()[1:]
    assert (int(count), float(p50), float(maximum)) == (100, 50.5, 119.0)
    assert 90 <= float(p90) <= 91 and 99 <= float(p99) <= 120
    assert "source 0, result 2, gallery 0" in report
