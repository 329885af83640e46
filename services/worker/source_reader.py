"""A job's photo: its sealed source read from S3 and opened with its key (shared/crypto.py). A source that cannot
be read is a permanent failure of the job, raised as `SourceUnusable`."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from shared.crypto import SealBroken, unseal
from shared.errors import JobErrorCode, JobFailure
from shared.logging import get_logger
from shared.source_keys import KeyGone, SourceKeys, SourceNotStored
from shared.storage import ObjectMissing, ObjectStore, source_key

log = get_logger("portraits.worker")


class SourceUnusable(Exception):
    """The job's source can never be read: the job fails with `failure`."""

    def __init__(self, failure: JobFailure, *, erase: bool = True) -> None:
        super().__init__(failure.code)
        self.failure = failure
        self.erase = erase  # False: the source never became readable; its scheduled deletion is left in place


class SourceReader:
    def __init__(self, storage: ObjectStore, keys: SourceKeys) -> None:
        self._storage = storage
        self._keys = keys
        self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetch")

    def fetch_ahead(self, job_id: str) -> Future[bytes]:
        """Start reading the job's sealed source on a thread of its own, so the runner can claim the job meanwhile
        (#11). Reading changes nothing: bytes nobody opens are simply dropped."""
        return self._ahead.submit(self.fetch_sealed, job_id)

    def fetch_sealed(self, job_id: str) -> bytes:
        """The job's sealed source from S3, read without waiting for its key (the claim brings the key). Not there
        yet: the gateway may still be storing it, and publishes the key only after its put, so wait for the key
        (shared/source_keys.py) and read again."""
        with _source_errors(job_id):
            try:
                return self._storage.get(self._storage.sources_bucket, source_key(job_id))
            except ObjectMissing:
                self._keys.load(job_id)  # returns once the source is stored; raises if it never will be
                return self._storage.get(self._storage.sources_bucket, source_key(job_id))

    def open(self, job_id: str, key: bytes | None, fetch: Future[bytes] | None) -> bytes:
        """The job's photo: its sealed source (`fetch`, already under way, or read now) opened with `key`, the one
        its claim brought, or, when the claim came before the key was published (None), the key once it is."""
        sealed = fetch.result() if fetch is not None else self.fetch_sealed(job_id)
        with _source_errors(job_id):
            return unseal(key if key is not None else self._keys.load(job_id), sealed, job_id)


@contextmanager
def _source_errors(job_id: str) -> Iterator[None]:
    """A source that cannot be read, as the permanent failure it is."""
    try:
        yield
    except SourceNotStored as exc:
        # The upload was abandoned (or its gateway died) before the put succeeded. No erasure here: a put the
        # gateway gave up on may still land later (issue 9), and erasing would take it off its deletion schedule.
        log.warning("source never stored; left to its deletion deadline", job_id=job_id)
        raise SourceUnusable(JobErrorCode.SOURCE_EXPIRED.failure, erase=False) from exc
    except (KeyGone, ObjectMissing) as exc:
        raise SourceUnusable(JobErrorCode.SOURCE_EXPIRED.failure) from exc
    except SealBroken as exc:
        raise SourceUnusable(JobErrorCode.SOURCE_UNREADABLE.failure) from exc
