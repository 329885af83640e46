"""CORS on the buckets: the page's origin may GET and HEAD objects, and nothing else may do anything (#25).

SeaweedFS's default reflects any origin and allows PUT, POST and DELETE with any header. start.sh's
-s3.allowedOrigins narrows the origin; the methods only a bucket's own rules narrow, and `weed shell` cannot
set those: this puts them through the S3 API (PutBucketCors), then reads them back.

One copy (#12): docker compose (the s3-cors service) and the dev overlay (the seaweedfs-cors Job) run it in the
janitor image, after init.sh has made the buckets; the local run and the tests load it from here
(scripts/devstack). Standalone, like grpc_certs.py: boto3 and the standard library only. From the environment,
with the settings' names: PORTRAITS_S3_ENDPOINT_URL, PORTRAITS_S3_ACCESS_KEY_ID,
PORTRAITS_S3_SECRET_ACCESS_KEY, PORTRAITS_S3_REGION, PORTRAITS_SOURCES_BUCKET, PORTRAITS_RESULTS_BUCKET,
PORTRAITS_PUBLIC_ORIGIN.

    python deploy/seaweedfs/bucket_cors.py
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

DEFAULT_ORIGIN = "http://127.0.0.1:8080"  # the local run's gateway: the setting public_origin's default
METHODS = ("GET", "HEAD")  # the page shows a presigned image; it never writes to storage
MAX_AGE_SECONDS = 600


def rules(origin: str) -> dict[str, Any]:
    """The CORS configuration: one rule, the page's origin, GET and HEAD, no request headers, no exposed ones.
    Raises ValueError for anything but an origin as browsers send it (a path or a slash would never match)."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or origin != f"{parts.scheme}://{parts.netloc}":
        raise ValueError(f"{origin!r} is not an origin like https://portraits.example[:port]")
    return {
        "CORSRules": [{"AllowedOrigins": [origin], "AllowedMethods": list(METHODS), "MaxAgeSeconds": MAX_AGE_SECONDS}]
    }


def apply(client: Any, buckets: Iterable[str], origin: str) -> None:
    """Put the rules on each bucket and read them back; raises RuntimeError if one does not hold them."""
    wanted = rules(origin)
    for bucket in buckets:
        client.put_bucket_cors(Bucket=bucket, CORSConfiguration=wanted)
        got = client.get_bucket_cors(Bucket=bucket).get("CORSRules", [])
        if [_normalised(rule) for rule in got] != [_normalised(rule) for rule in wanted["CORSRules"]]:
            raise RuntimeError(f"bucket {bucket}: CORS read back as {got}, not {wanted['CORSRules']}")


def _normalised(rule: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], int]:
    return (
        tuple(sorted(rule.get("AllowedOrigins", []))),
        tuple(sorted(rule.get("AllowedMethods", []))),
        tuple(sorted(rule.get("AllowedHeaders", []))),
        int(rule.get("MaxAgeSeconds", 0)),
    )


def main(env: Mapping[str, str] = os.environ) -> int:
    import boto3
    from botocore.config import Config

    origin = env.get("PORTRAITS_PUBLIC_ORIGIN") or DEFAULT_ORIGIN
    buckets = [
        env.get("PORTRAITS_SOURCES_BUCKET") or "portrait-sources",
        env.get("PORTRAITS_RESULTS_BUCKET") or "portrait-results",
    ]
    try:
        client = boto3.client(
            "s3",
            endpoint_url=env.get("PORTRAITS_S3_ENDPOINT_URL") or "http://seaweedfs:8333",
            aws_access_key_id=env["PORTRAITS_S3_ACCESS_KEY_ID"],
            aws_secret_access_key=env["PORTRAITS_S3_SECRET_ACCESS_KEY"],
            config=Config(
                region_name=env.get("PORTRAITS_S3_REGION") or "us-east-1",
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 5, "mode": "standard"},
            ),
        )
        apply(client, buckets, origin)
    except KeyError as exc:
        print(f"bucket_cors.py: {exc.args[0]} is not set", file=sys.stderr)
        return 1
    except Exception as exc:  # a missing bucket (init.sh not run yet), S3 down: the Job or service retries
        print(f"bucket_cors.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"cors ready: {', '.join(buckets)} allow {' and '.join(METHODS)} from {origin} only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
