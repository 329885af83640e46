"""What the gateway's write guarantee costs (#24): an upload with `redis_wait_replicas=1` (WAIT for the replica
before the 202) against the same upload without, on a real primary and replica (and SeaweedFS for the upload).

    make bench-wait            # python -m scripts.bench_wait --pairs 200

Two measures, each as alternating pairs (one call of each variant in turn, as scripts/bench_pair.py does: both
meet the same minute of the machine):
- the step that changes, `SourceKeys.publish` alone (one round trip either way; WAIT rides on it);
- a whole upload through the gateway app (Flask's test client, no HTTP server): validation, re-encoding,
  sealing, the S3 put, the broker message and the Redis writes.
Prints each variant's median and p99 and the median of the per-pair differences, and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis
from tqdm import tqdm

from scripts.devstack import LOOPBACK, ensure_buckets, start_redis, start_seaweedfs
from scripts.support import samples
from services.gateway.app import create_app
from shared.logging import configure_logging
from shared.settings import Settings
from shared.source_keys import SourceKeys

WARM_UP = 10  # calls of each variant before timing: first connections, first encodes


def paired(label: str, a: Callable[[], object], b: Callable[[], object], pairs: int) -> None:
    """Time `a` and `b` alternately `pairs` times and print both and their difference (b − a)."""
    times_a: list[float] = []
    times_b: list[float] = []
    for _ in range(WARM_UP):
        a()
        b()
    for index in tqdm(range(pairs), desc=label, file=sys.stderr, leave=False):
        for call, into in ((a, times_a), (b, times_b)) if index % 2 == 0 else ((b, times_b), (a, times_a)):
            started = time.perf_counter()
            call()
            into.append(time.perf_counter() - started)
    diffs = sorted(y - x for x, y in zip(times_a, times_b, strict=True))

    def ms(values: list[float], q: float) -> str:
        ordered = sorted(values)
        return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:7.2f}"

    median_a, median_b = statistics.median(times_a), statistics.median(times_b)
    print(
        f"| {label} | {ms(times_a, 0.5)} | {ms(times_a, 0.99)} | {ms(times_b, 0.5)} | {ms(times_b, 0.99)} "
        f"| {statistics.median(diffs) * 1000:+.2f} | {median_b / median_a:.3f} |",
        flush=True,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-wait-") as folder:
        work = Path(folder)
        primary = start_redis(work / "primary")
        replica = start_redis(work / "replica")
        s3 = start_seaweedfs(work / "seaweedfs")
        try:
            redis.Redis(LOOPBACK, replica.port).replicaof(LOOPBACK, primary.port)
            client = redis.Redis(LOOPBACK, primary.port)
            while int(client.wait(1, 100)) < 1:
                pass
            keys = SourceKeys(client, 120)
            base = Settings(
                redis_url=primary.url,
                s3_endpoint_url=s3.endpoint,
                s3_access_key_id=s3.credentials.access_key,
                s3_secret_access_key=s3.credentials.secret_key,
                upload_rate_limit="",
                log_json=False,
                log_level="WARNING",
            )
            ensure_buckets(s3.endpoint, s3.credentials, [base.sources_bucket, base.results_bucket])
            configure_logging(base, "bench")  # warnings only: a line per upload would be most of the run's time
            plain = create_app(base).test_client()
            waiting = create_app(base, redis_wait_replicas=1).test_client()
            photo = samples.grace_hopper_path().read_bytes()

            def upload(app_client: object) -> Callable[[], object]:
                def call() -> object:
                    form = {"image": (io.BytesIO(photo), "selfie.jpg", "image/jpeg")}
                    response = app_client.post("/v1/portraits", data=form, content_type="multipart/form-data")  # type: ignore[attr-defined]
                    assert response.status_code == 202, response.get_json()
                    return response

                return call

            counter = iter(range(10**9))
            print("| measure | no wait p50 ms | p99 | WAIT 1 p50 ms | p99 | median pair diff ms | ratio of p50s |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            paired(
                "publish the source key",
                lambda: keys.publish(f"bench{next(counter)}", b"k" * 32),
                lambda: keys.publish(f"bench{next(counter)}", b"k" * 32, replicas=1, wait_ms=250),
                args.pairs * 5,
            )
            paired("whole upload (test client)", upload(plain), upload(waiting), args.pairs)
        finally:
            s3.kill()
            primary.kill()
            replica.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
