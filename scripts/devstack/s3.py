"""boto3 clients for SeaweedFS's S3 gateway, its readiness and the buckets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scripts.devstack.commands import CORS_SCRIPT, seaweedfs_script_module
from scripts.devstack.credentials import S3Credentials
from scripts.devstack.readiness import poll

S3_REGION = "us-east-1"  # SigV4 signs the region: every client and presigner must use the same one.
# The page's origin in the local run (its gateway): the setting public_origin's default, which start.sh and
# bucket_cors.py also fall back to; the only origin whose browser CORS lets read objects.
PAGE_ORIGIN = "http://127.0.0.1:8080"


def s3_client(
    endpoint: str,
    creds: S3Credentials,
    *,
    max_attempts: int = 3,
    connect_timeout: float = 2.0,
    read_timeout: float = 10.0,
) -> Any:
    """A boto3 S3 client for SeaweedFS: path-style URLs (no per-bucket DNS names on loopback), SigV4,
    us-east-1, standard retries, short timeouts (a dead local server should fail a test in seconds)."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=S3_REGION,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        config=config,
    )


def s3_ready(endpoint: str, creds: S3Credentials) -> bool:
    """A signed ListBuckets succeeds with these credentials."""
    s3_client(endpoint, creds, max_attempts=1, connect_timeout=0.5, read_timeout=2.0).list_buckets()
    return True


def wait_for_s3(endpoint: str, creds: S3Credentials, timeout: float = 30.0) -> float:
    """Wait until a signed ListBuckets succeeds; return the seconds waited."""
    return poll(lambda: s3_ready(endpoint, creds), timeout, f"S3 at {endpoint}")


def ensure_buckets(
    endpoint: str, creds: S3Credentials, names: Iterable[str], *, page_origin: str = PAGE_ORIGIN
) -> None:
    """Create the buckets that don't exist yet (safe to call on every start), with the CORS rules the
    deployments give theirs (deploy/seaweedfs/bucket_cors.py): GET and HEAD from `page_origin` only (#25)."""
    from botocore.exceptions import ClientError

    client = s3_client(endpoint, creds)
    names = list(names)
    for name in names:
        try:
            client.create_bucket(Bucket=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
    seaweedfs_script_module(CORS_SCRIPT).apply(client, names, page_origin)
