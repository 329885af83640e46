"""Object storage over boto3: sources and results in separate buckets, keys derived from the job id.

Retries live in botocore's configuration (standard mode), not in loops here. What still fails after them is
raised as `StorageUnavailable` (transient: the caller may retry later) or `ObjectMissing`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.settings import Settings

if TYPE_CHECKING:  # the stubs are in the `lint` extra only; nothing imports them at run time (#12)
    from botocore.config import _RetryDict
    from mypy_boto3_s3 import S3Client

_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
#: Result content types and their key extensions: the worker names results by these, erasure tries them all.
RESULT_EXTENSIONS = {"image/jpeg": "jpg", "image/webp": "webp"}


class StorageUnavailable(RuntimeError):
    """S3 could not be reached or answered with a server error: worth retrying later."""


class ObjectMissing(LookupError):
    pass


def source_key(job_id: str) -> str:
    return f"sources/{job_id}"


def result_key(job_id: str, extension: str) -> str:
    # Derived from the job id alone, so a redelivered task overwrites rather than duplicates.
    return f"results/{job_id}.{extension}"


def job_id_of(key: str) -> str:
    """The job id inside a source or result key (the inverse of the two functions above)."""
    return key.split("/", 1)[-1].split(".", 1)[0]


def _client(settings: Settings, endpoint_url: str, fail_fast: bool = False) -> S3Client:
    # botocore's `max_attempts` counts retries, not attempts: 4 means up to 5 calls. `total_max_attempts`
    # counts attempts.
    retries: _RetryDict = (
        {"total_max_attempts": settings.s3_max_attempts, "mode": "standard"}
        if fail_fast
        else {"max_attempts": settings.s3_max_attempts, "mode": "standard"}
    )
    config = Config(
        region_name=settings.s3_region,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries=retries,
        connect_timeout=settings.s3_connect_timeout,
        read_timeout=settings.s3_read_timeout,
        # botocore ≥ 1.36 adds a CRC to every upload and checks one on every download by default; S3 wants
        # neither here (TLS or loopback carries the bytes, and the sealed source has its own GCM tag): 0.3-0.5 ms
        # per call, three calls on each job's path (#11).
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key.get_secret_value(),
        config=config,
    )
    # botocore sends every upload with `Expect: 100-continue`: one more round trip before the body goes, and
    # against a hung S3 a fixed second's wait per attempt before it is sent anyway (issue 9). Our uploads are a
    # few hundred kB to our own S3, which has no reason to refuse them early.
    client.meta.events.register("before-send.s3", _without_expect_continue)
    return client


def _without_expect_continue(request: Any, **_: Any) -> None:
    request.headers.pop("Expect", None)  # not signed: removing it leaves the signature valid


class ObjectStore:
    def __init__(self, settings: Settings, *, fail_fast: bool = False) -> None:
        """`fail_fast` (the gateway, which has a client waiting): `s3_max_attempts` counts attempts, not
        retries, and uploads do not wait for `100 Continue`."""
        self.sources_bucket = settings.sources_bucket
        self.results_bucket = settings.results_bucket
        self._s3 = _client(settings, settings.s3_endpoint_url, fail_fast)
        # Presigned URLs carry the host they were signed for: sign with the address browsers can reach.
        public = settings.s3_public_endpoint_url or settings.s3_endpoint_url
        self._signer = self._s3 if public == settings.s3_endpoint_url else _client(settings, public, fail_fast)

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        with _translated_errors(key):
            self._s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, bucket: str, key: str) -> bytes:
        with _translated_errors(key):
            return self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def exists(self, bucket: str, key: str) -> bool:
        try:
            with _translated_errors(key):
                self._s3.head_object(Bucket=bucket, Key=key)
            return True
        except ObjectMissing:
            return False

    def delete(self, bucket: str, key: str) -> None:
        """Idempotent: deleting an absent object succeeds (S3 semantics)."""
        with _translated_errors(key):
            self._s3.delete_object(Bucket=bucket, Key=key)

    def list(self, bucket: str, prefix: str) -> Iterator[tuple[str, float]]:
        """(key, last-modified as epoch seconds) for every object under `prefix`, page by page."""
        paginator = self._s3.get_paginator("list_objects_v2")
        with _translated_errors(bucket):
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"], item["LastModified"].timestamp()

    def presigned_get(self, bucket: str, key: str, expires_in: int, *, download_name: str | None = None) -> str:
        """A presigned GET; with `download_name`, S3 answers `Content-Disposition: attachment` under that name
        (the page's download link, #10: a browser ignores `download` on a link to another origin)."""
        params = {"Bucket": bucket, "Key": key}
        if download_name is not None:
            params["ResponseContentDisposition"] = f'attachment; filename="{download_name}"'
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
    """Map botocore's exceptions onto ours."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _MISSING_CODES:
            raise ObjectMissing(key) from exc
        if status >= 500 or code in {"SlowDown", "ServiceUnavailable", "InternalError"}:
            raise StorageUnavailable(f"S3 error {code} on {key}") from exc
        raise  # 4xx such as AccessDenied: a configuration bug, not something to retry
    except BotoCoreError as exc:
        raise StorageUnavailable(f"S3 unreachable: {exc}") from exc
