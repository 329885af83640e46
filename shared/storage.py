"""Object storage: sources and results in separate buckets, keys derived from the job id.

Two clients, each for what it does best (#11):
- the data path — put, get, head, delete, list — goes through obstore (Rust's object_store). Against SeaweedFS on
  loopback, on the 2-core machine, a 130 kB put/get costs 2.9/1.4 ms through it and 5.2/3.7 ms through boto3:
  botocore's event hooks, ruleset endpoint resolution and response parsing cost more than the transfer, and three
  such calls sit on every job's critical path (gateway put, worker get, worker put);
- botocore keeps what obstore cannot do: presigned GETs carrying a response Content-Disposition (the page's
  download link), and `head_bucket` for readiness. Neither is on a job's path; signing is local.

Retries live in each client's configuration, not in loops here. What still fails after them is raised as one of
ours, never as the libraries' own: `StorageUnavailable` (transient: the caller may retry later), `ObjectMissing`,
or `StorageRefused` (bad credentials, no permission: a configuration bug, not retried); all are `StorageError`s.

obstore runs on a tokio runtime that does not survive `fork()`: a child of a process that has made an obstore call
hangs on its own first call, forever (measured, #11). Every service opens its stores after its fork — gunicorn
with `preload_app = False`, Celery's render processes in `worker_process_init`, the janitor never forks — and a
process forked after using one gets `StoreUsedBeforeFork` here instead of the hang.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING

import boto3
import obstore
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from obstore.exceptions import BaseError as ObstoreError
from obstore.exceptions import PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from shared.settings import S3Budget, Settings

if TYPE_CHECKING:  # the stubs are in the `lint` extra only; nothing imports them at run time (#12)
    from botocore.config import _RetryDict
    from mypy_boto3_s3 import S3Client
    from obstore.store import ClientConfig, RetryConfig

_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class StoreUsedBeforeFork(RuntimeError):
    """This process was forked from one that had used obstore: its runtime's threads did not come along, and a
    call would hang. Open stores after forking (see the module's docstring)."""


class _Runtime:
    """Whether this process has made an obstore call, and whether it inherited one made before a fork."""

    used = False
    inherited = False

    @classmethod
    def enter(cls) -> None:
        if cls.inherited:
            raise StoreUsedBeforeFork(
                f"process {os.getpid()} was forked after its parent used the object store; open stores after forking"
            )
        cls.used = True

    @classmethod
    def after_fork_in_child(cls) -> None:
        cls.inherited = cls.inherited or cls.used


os.register_at_fork(after_in_child=_Runtime.after_fork_in_child)


class StorageError(Exception):
    """Any failure of the object store, translated from the client library's own exception."""


class StorageUnavailable(StorageError, RuntimeError):
    """S3 could not be reached or answered with a server error: worth retrying later."""


class ObjectMissing(StorageError, LookupError):
    pass


class StorageRefused(StorageError):
    """S3 refused the request (credentials, permissions, another 4xx): a configuration bug, not worth retrying."""


def source_key(job_id: str) -> str:
    return f"sources/{job_id}"


def result_key(job_id: str, extension: str) -> str:
    # Derived from the job id alone, so a redelivered task overwrites rather than duplicates.
    return f"results/{job_id}.{extension}"


def job_id_of(key: str) -> str:
    """The job id inside a source or result key (the inverse of the two functions above)."""
    return key.split("/", 1)[-1].split(".", 1)[0]


_MAX_BACKOFF_SECONDS = 2.0
_REQUEST_TIMEOUT_CALLS = 4  # a whole request (a large object's transfer) may take this many connect+read timeouts


def longest_call_seconds(budget: S3Budget) -> float:
    """The longest one data call (a put of the sealed source…) can take, retries included: the retry budget,
    then a last request started just before it ran out, with its own timeout, after the longest backoff."""
    return budget.per_call_seconds * (budget.attempts + _REQUEST_TIMEOUT_CALLS) + _MAX_BACKOFF_SECONDS


@dataclass(frozen=True)
class _Account:
    """Where the buckets are and who we are there."""

    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str


def _bucket_store(account: _Account, bucket: str, budget: S3Budget) -> S3Store:
    client: ClientConfig = {
        "allow_http": account.endpoint_url.startswith("http://"),
        "connect_timeout": timedelta(seconds=budget.connect_timeout),
        # Per read, as botocore's read_timeout: a stalled S3 is noticed, a large object is not cut off.
        "read_timeout": timedelta(seconds=budget.read_timeout),
        "timeout": timedelta(seconds=budget.per_call_seconds * _REQUEST_TIMEOUT_CALLS),
    }
    retry: RetryConfig = {
        "max_retries": budget.attempts - 1,
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=_MAX_BACKOFF_SECONDS),
            "base": 2,
        },
        # Bounds the whole call, retries included, as botocore's attempts × timeouts did (a hung S3 fails a worker
        # call within ~30 s, inside a render's 60 s soft limit: issue 9).
        "retry_timeout": timedelta(seconds=budget.per_call_seconds * budget.attempts),
    }
    return S3Store(
        bucket,
        endpoint=account.endpoint_url,
        region=account.region,
        access_key_id=account.access_key_id,
        secret_access_key=account.secret_access_key,
        virtual_hosted_style_request=False,  # path style, as SeaweedFS and MinIO serve it
        client_options=client,
        retry_config=retry,
    )


def _signing_client(account: _Account, budget: S3Budget) -> S3Client:
    """botocore, for presigning and `head_bucket` only (see the module's docstring)."""
    # `total_max_attempts` counts attempts, the first included (botocore's `max_attempts` counts retries).
    retries: _RetryDict = {"total_max_attempts": budget.attempts, "mode": "standard"}
    config = Config(
        region_name=account.region,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries=retries,
        connect_timeout=budget.connect_timeout,
        read_timeout=budget.read_timeout,
    )
    return boto3.client(
        "s3",
        endpoint_url=account.endpoint_url,
        aws_access_key_id=account.access_key_id,
        aws_secret_access_key=account.secret_access_key,
        config=config,
    )


class ObjectStore:
    def __init__(self, settings: Settings, budget: S3Budget | None = None) -> None:
        """The buckets `settings` names, each call on `budget` (default: a worker's or the janitor's,
        `settings.s3_budget()`). Nothing connects yet: the first call does, in the process that makes it (see
        StoreUsedBeforeFork)."""
        budget = budget if budget is not None else settings.s3_budget()
        self.budget = budget
        self.sources_bucket = settings.sources_bucket
        self.results_bucket = settings.results_bucket
        account = _Account(
            settings.s3_endpoint_url,
            settings.s3_region,
            settings.s3_access_key_id,
            settings.s3_secret_access_key.get_secret_value(),
        )
        self._buckets = {
            bucket: _bucket_store(account, bucket, budget)
            for bucket in dict.fromkeys([settings.sources_bucket, settings.results_bucket])
        }
        self._s3 = _signing_client(account, budget)
        # Presigned URLs carry the host they were signed for: sign with the address browsers can reach.
        public = settings.s3_public_endpoint_url or settings.s3_endpoint_url
        self._signer = (
            self._s3
            if public == account.endpoint_url
            else _signing_client(replace(account, endpoint_url=public), budget)
        )

    def _store(self, bucket: str) -> S3Store:
        _Runtime.enter()
        try:
            return self._buckets[bucket]
        except KeyError:
            raise ValueError(f"bucket {bucket!r} is neither the sources nor the results bucket") from None

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        store = self._store(bucket)
        with _translated_errors(key):
            obstore.put(store, key, data, attributes={"Content-Type": content_type}, use_multipart=False)

    def get(self, bucket: str, key: str) -> bytes:
        store = self._store(bucket)
        with _translated_errors(key):
            return obstore.get(store, key).bytes().to_bytes()

    def exists(self, bucket: str, key: str) -> bool:
        store = self._store(bucket)
        try:
            with _translated_errors(key):
                obstore.head(store, key)
            return True
        except ObjectMissing:
            return False

    def delete(self, bucket: str, key: str) -> None:
        """Idempotent: deleting an absent object succeeds (S3 semantics)."""
        store = self._store(bucket)
        with _translated_errors(key):
            obstore.delete(store, key)

    def copy(self, bucket: str, source: str, destination: str) -> None:
        """A server-side copy within the bucket (the gallery's release, #25: the copy's Last-Modified is now);
        `ObjectMissing` when the source is not there."""
        store = self._store(bucket)
        with _translated_errors(source):
            obstore.copy(store, source, destination, overwrite=True)

    def list(self, bucket: str, prefix: str) -> Iterator[tuple[str, float]]:
        """(key, last-modified as epoch seconds) for every object under `prefix`, page by page."""
        store = self._store(bucket)
        with _translated_errors(bucket):
            for page in obstore.list(store, prefix=prefix, chunk_size=1000):
                for item in page:
                    yield item["path"], item["last_modified"].timestamp()

    def presigned_get(self, bucket: str, key: str, expires_in: int, *, download_name: str | None = None) -> str:
        """A presigned GET; with `download_name`, S3 answers `Content-Disposition: attachment` under that name
        (the page's download link, #10: a browser ignores `download` on a link to another origin)."""
        params = {"Bucket": bucket, "Key": key}
        if download_name is not None:
            params["ResponseContentDisposition"] = f'attachment; filename="{download_name}"'
        with _translated_errors(key):
            return self._signer.generate_presigned_url("get_object", Params=params, ExpiresIn=max(1, int(expires_in)))

    def ping(self) -> None:
        """Raises `StorageUnavailable` unless both buckets answer."""
        for bucket in (self.sources_bucket, self.results_bucket):
            try:
                with _translated_errors(bucket):
                    self._s3.head_bucket(Bucket=bucket)
            except ObjectMissing as exc:
                raise StorageUnavailable(f"bucket {bucket} does not exist") from exc


@contextmanager
def _translated_errors(key: str) -> Iterator[None]:
    """Map obstore's and botocore's exceptions onto ours, so no caller imports either library's."""
    try:
        yield
    except FileNotFoundError as exc:  # obstore's "not found" (its NotFoundError is deprecated for it)
        raise ObjectMissing(key) from exc
    except (PermissionDeniedError, UnauthenticatedError) as exc:
        raise StorageRefused(f"S3 refused the request on {key}: {_first_line(exc)}") from exc
    except ObstoreError as exc:  # connection refused or reset, timeouts, 5xx: all after obstore's retries
        raise StorageUnavailable(f"S3 error on {key}: {_first_line(exc)}") from exc
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _MISSING_CODES:
            raise ObjectMissing(key) from exc
        if status >= 500 or code in {"SlowDown", "ServiceUnavailable", "InternalError"}:
            raise StorageUnavailable(f"S3 error {code} on {key}") from exc
        raise StorageRefused(f"S3 refused the request on {key}: {code} ({status})") from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(f"S3 unreachable: {exc}") from exc


def _first_line(exc: Exception) -> str:
    # object_store's messages run over several lines (the whole source chain); logs want the first.
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
