"""`make chaos`: break the real stack in every way issue 9 lists and print one row per fault.

    python -m scripts.chaos            # the full run (about 10 minutes on 2 cores)
    python -m scripts.chaos --quick    # the CI-sized run (what tests/chaos/ asserts)

Each fault runs under bounded load (a few clients uploading, polling and downloading). Columns: jobs accepted,
done, failed (codes), lost; 5xx answers (and 503s without our JSON envelope or Retry-After); honest 503s; the
oldest source seen; seconds to recover; /healthz p99; upload p50; whether the issue's targets were met ("5xx" also
counts requests that got no answer at all, e.g. a connection dropped by a killed server process). The
table is also written to var/chaos/report.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from scripts.chaos.cluster import ClusterStack
from scripts.chaos.cluster_faults import endpoint_replaced, host_killed, sentinel_failover, volume_server_killed
from scripts.chaos.faults import (
    KillMethod,
    Plan,
    Row,
    abusive_burst,
    baseline,
    redis_hung,
    redis_killed,
    s3_stopped,
    slow_uploaders,
    worker_kills,
)
from scripts.chaos.stack import ChaosStack
from scripts.support import samples
from shared.settings import PROJECT_ROOT

REPORT = PROJECT_ROOT / "var" / "chaos" / "report.md"


def storage_row(stack: ChaosStack) -> Row:
    """Every unsigned path to a stored object through SeaweedFS's own ports must be refused. Of its status
    pages only those no weed flag closes may answer (#25: on loopback, as in the local run; compose and the dev
    overlay keep them off the network), and none may grant another origin CORS; nor may the object's URL, and
    the page's own origin gets GET and HEAD only."""
    from scripts.devstack import PAGE_ORIGIN, status_pages
    from scripts.storage_backdoor import unsigned_reads

    bucket, key = stack.settings.results_bucket, "results/chaos-probe.jpg"
    client = stack.s3.client()
    client.put_object(Bucket=bucket, Key=key, Body=b"not for strangers")
    attempts = unsigned_reads(stack.s3.ports, bucket, key)
    row = Row("unsigned reads through SeaweedFS ports")
    row.notes.append(f"{sum(a.refused for a in attempts)}/{len(attempts)} refused")
    row.problems += [f"{a.port} {a.what}: {a.status or a.error}" for a in attempts if not a.refused]
    pages = status_pages.probe(stack.s3.ports)
    answered = status_pages.answered(pages)
    row.notes.append(f"status pages answering on loopback: {len(answered)}")
    row.problems += [f"{part} {path} answers" for part, path in sorted(answered - status_pages.OPEN_WHERE_REACHABLE)]
    row.problems += [
        f"{p.part} {p.path} grants CORS to {p.allow_origin}" for p in pages if p.answered and p.allow_origin
    ]
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
    if status_pages.browser(url, status_pages.STRANGER_ORIGIN)[1]:
        row.problems.append("CORS lets another origin read a portrait")
    for method in ("PUT", "DELETE"):
        allowed = status_pages.browser(url, PAGE_ORIGIN, preflight=method)[1].get("access-control-allow-methods", "")
        if method in allowed:
            row.problems.append(f"CORS lets the page {method}")
    client.delete_object(Bucket=bucket, Key=key)
    return row


def run(plan: Plan, workdir: Path, progress: bool = True) -> list[Row]:
    photo = samples.grace_hopper_path().read_bytes()
    rows: list[Row] = []

    def step(label: str, make_row: Callable[[], Row]) -> Row:
        started = time.monotonic()
        if progress:
            print(f"[chaos] {label} …", flush=True)
        row = make_row()
        rows.append(row)
        if progress:
            verdict = "ok" if row.met else "; ".join(row.problems)
            print(f"[chaos] {label}: {time.monotonic() - started:.0f} s, {verdict}", flush=True)
        return row

    # One client address for every load client: the per-address upload limit is raised to what they send.
    with ChaosStack(workdir, upload_rate_limit="600/minute") as stack:
        base = step("baseline", lambda: baseline(stack, plan, photo))
        step("render process kills", lambda: worker_kills(stack, plan, photo, KillMethod.RENDER_SIGKILL, plan.kills))
        step(
            "whole worker kills", lambda: worker_kills(stack, plan, photo, KillMethod.WORKER_SIGKILL, plan.worker_kills)
        )
        step("cold shutdowns", lambda: worker_kills(stack, plan, photo, KillMethod.WORKER_SIGQUIT, plan.kills))
        step("warm shutdowns", lambda: worker_kills(stack, plan, photo, KillMethod.WORKER_SIGTERM, plan.kills))
        step("Redis killed", lambda: redis_killed(stack, plan, photo))
        step("Redis hung", lambda: redis_hung(stack, plan, photo))
        step("S3 stopped", lambda: s3_stopped(stack, plan, photo))
        for count in plan.slow_clients:
            step(f"{count} slow uploaders", partial(slow_uploaders, stack, plan, photo, count, base))
        step("abusive burst", lambda: abusive_burst(stack, plan, photo))
        step("storage back door", lambda: storage_row(stack))
    run_cluster(plan, workdir / "cluster", photo, step=step)  # `step` adds each row to `rows`
    return rows


def run_cluster(plan: Plan, workdir: Path, photo: bytes, step: Callable[[str, Callable[[], Row]], Row]) -> list[Row]:
    """The multi-host rows (#24) on a stack of their own: two hosts, a Sentinel-managed Redis set behind one
    address, three volume servers (scripts/chaos/cluster.py)."""
    rows = []
    with ClusterStack(workdir, upload_rate_limit="600/minute") as stack:
        rows.append(step("Redis primary SIGKILL", lambda: sentinel_failover(stack, plan, photo)))
        rows.append(step("primary replaced behind one address", lambda: endpoint_replaced(stack, plan, photo)))
        rows.append(step("volume server killed", lambda: volume_server_killed(stack, plan, photo)))
        rows.append(step("whole host killed", lambda: host_killed(stack, plan, photo)))
    return rows


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f} ms"


def table(rows: list[Row]) -> str:
    lines = [
        "| fault | accepted | done | failed (codes) | lost | 5xx | 503 | oldest source | recover | "
        "healthz p99 | upload p50 | targets |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        failed = ", ".join(f"{code} {n}" for code, n in sorted(row.failed.items())) or "0"
        verdict = "met" if row.met else "**missed**: " + "; ".join(row.problems)
        lines.append(
            f"| {row.fault} | {row.accepted} | {row.done} | {failed} | {row.lost} | {row.server_errors} "
            f"| {row.unavailable} | {_seconds(row.oldest_source)} | {_seconds(row.recover)} "
            f"| {_ms(row.healthz_p99)} | {_ms(row.upload_p50)} | {verdict} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the CI-sized run")
    parser.add_argument("--worker-kills", type=int, help="whole-worker SIGKILLs (default 20; 1 with --quick)")
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    if args.worker_kills is not None:
        plan = dataclasses.replace(plan, worker_kills=args.worker_kills)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chaos-", dir=REPORT.parent) as workdir:
        rows = run(plan, Path(workdir))
    text = table(rows)
    REPORT.write_text(text + "\n")
    print("\n" + text)
    return 0 if all(row.met for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
