"""A job erased at its owner's request (DELETE /v1/portraits/<id>): every object it may have, then its record."""

from __future__ import annotations

from services.gateway import metrics
from services.gateway.context import Gateway
from shared.audit import Deleter, ObjectKind
from shared.gallery import GalleryIndex, Gone
from shared.jobs import Job
from shared.logging import get_logger
from shared.output_format import OutputFormat
from shared.storage import result_key, source_key

log = get_logger(__name__)


def erase(gw: Gateway, job: Job) -> bool:
    """Result(s), source, source key, then the record: the record goes last so a failed erasure can be
    retried with the same id. Every step is idempotent. True when a gallery copy of the job may outlive it."""
    # A worker racing this DELETE may write its result after we read the record: remove every possible key.
    results = {result_key(job.id, output.extension) for output in OutputFormat}
    if job.result_key:
        results.add(job.result_key)
    for key in sorted(results):
        gw.eraser.erase(ObjectKind.RESULT, key, job.id, Deleter.USER, reason="erased")
    gw.eraser.erase(ObjectKind.SOURCE, source_key(job.id), job.id, Deleter.USER, reason="erased")
    # A copy already published is independent of the job; only its withdraw token removes it (#10). The record
    # forgets the gallery id once the copy is published (or given up), so a shared job without one may have one.
    copy_may_remain = job.share and not job.gallery_id
    if job.gallery_id:
        # Erased before its copy was published: the publication is cancelled (the worker erases a copy it wrote
        # meanwhile). Not cancelled: its owner withdrew it already (gone), or the worker made the copy since.
        index = GalleryIndex(gw.redis)
        cancelled = index.remove(job.gallery_id, only_pending=True)
        copy_may_remain = not cancelled and not isinstance(index.lookup(job.gallery_id), Gone | None)
    gw.jobs.delete(job.id)
    return copy_may_remain


def job_erased_by_user(job_id: str) -> None:
    """The single place a user-requested erasure is counted (each object's audit record is the Eraser's)."""
    metrics.ERASED.inc()
    log.info("job erased by user", job_id=job_id)
