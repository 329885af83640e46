"""The deletion audit: one append-only record per deleted object, in a bounded Redis stream and a log line.

Records carry ids, kinds, times and who deleted — never image bytes, file names or client addresses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

import redis

from shared.logging import get_logger
from shared.redis_replies import fields, stream_entries

log = get_logger("portraits.audit")


class ObjectKind(StrEnum):
    SOURCE = "source"
    RESULT = "result"
    GALLERY = "gallery"  # a shared portrait's copy (#10); its records' `job_id` holds the gallery id, never the job's


class Deleter(StrEnum):
    WORKER = "worker"  # source deleted as soon as the portrait was stored (or the job failed)
    JANITOR = "janitor"  # deadline reached, or an orphan found by reconciliation
    USER = "user"  # DELETE /v1/portraits/<id>, or a gallery entry withdrawn with its token


@dataclass(frozen=True)
class AuditEntry:
    job_id: str
    kind: ObjectKind
    created_at: float
    deleted_at: float
    deleted_by: Deleter
    reason: str  # done, failed, expired, orphan, erased…
    verified: bool  # a read-back after the delete found nothing

    @property
    def lifetime(self) -> float:
        return max(0.0, self.deleted_at - self.created_at)

    def to_fields(self) -> dict[str, str]:
        fields = {name: str(value) for name, value in asdict(self).items()}
        fields["lifetime"] = f"{self.lifetime:.3f}"
        return fields

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> AuditEntry:
        values = {key.decode(): value.decode() for key, value in fields.items()}
        return cls(
            job_id=values["job_id"],
            kind=ObjectKind(values["kind"]),
            created_at=float(values["created_at"]),
            deleted_at=float(values["deleted_at"]),
            deleted_by=Deleter(values["deleted_by"]),
            reason=values["reason"],
            verified=values["verified"] == "True",
        )


class AuditLog:
    STREAM = "portraits:audit"

    def __init__(self, client: redis.Redis, max_entries: int) -> None:
        self._redis = client
        self._max_entries = max_entries

    def record(self, entry: AuditEntry) -> None:
        # approximate=True lets Redis trim whole macro-nodes: bounded without a cost on every append.
        self._redis.xadd(self.STREAM, fields(entry.to_fields()), maxlen=self._max_entries, approximate=True)
        log.info("object deleted", **{k: v for k, v in entry.to_fields().items()})

    def entries(self) -> list[AuditEntry]:
        """Every retained record, oldest first (read in pages: the stream may hold many thousands)."""
        entries: list[AuditEntry] = []
        start = "-"
        while True:
            page = stream_entries(self._redis.xrange(self.STREAM, min=start, max="+", count=1000))
            entries += [AuditEntry.from_fields(values) for _, values in page]
            if len(page) < 1000:
                return entries
            start = "(" + page[-1][0].decode()
