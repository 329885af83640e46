"""The object store raises only its own exceptions, so no caller needs to know obstore's or botocore's: each library
error maps onto one of ours, and every one of ours is a `StorageError`."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from obstore.exceptions import GenericError, PermissionDeniedError, UnauthenticatedError
from pydantic import SecretStr

from scripts.devstack import ensure_buckets
from shared.storage import (
    ObjectMissing,
    ObjectStore,
    StorageError,
    StorageRefused,
    StorageUnavailable,
    _translated_errors,
)
from tests.integration.shared.test_storage import settings_for


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize(
    ("raised", "ours"),
    [
        (FileNotFoundError("sources/x"), ObjectMissing),
        (PermissionDeniedError("403 Forbidden\nmore"), StorageRefused),
        (UnauthenticatedError("401\nmore"), StorageRefused),
        (GenericError("connection refused\nmore"), StorageUnavailable),
        (_client_error("NoSuchKey", 404), ObjectMissing),
        (_client_error("SlowDown", 503), StorageUnavailable),
        (_client_error("InternalError", 500), StorageUnavailable),
        (_client_error("AccessDenied", 403), StorageRefused),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), StorageUnavailable),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.__name__,
)
def test_every_library_error_becomes_one_of_ours(raised: Exception, ours: type[StorageError]) -> None:
    with pytest.raises(ours) as caught, _translated_errors("sources/x"):
        raise raised
    assert isinstance(caught.value, StorageError)
    assert caught.value.__cause__ is raised
    assert "\n" not in str(caught.value)  # one line for the logs


def test_our_errors_keep_their_builtin_kinds() -> None:
    # Callers that catch LookupError or RuntimeError still catch what they did.
    assert issubclass(ObjectMissing, LookupError)
    assert issubclass(StorageUnavailable, RuntimeError)
    assert not issubclass(StorageRefused, StorageUnavailable)  # a refusal is not retried as an outage


def test_refused_credentials_raise_ours_with_the_status(s3_server) -> None:
    ensure_buckets(s3_server.endpoint, s3_server.credentials, ["storage-sources", "storage-results"])
    settings = settings_for(s3_server).model_copy(update={"s3_secret_access_key": SecretStr("not-the-secret")})
    refused = ObjectStore(settings)
    with pytest.raises(StorageRefused, match="403"):
        refused.get("storage-sources", "sources/x")
    with pytest.raises(StorageRefused):
        refused.put("storage-sources", "sources/x", b"x", "application/octet-stream")
