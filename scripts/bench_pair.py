"""A paired A/B of the latency the system adds at one client (#11): this working tree against a base revision.
Both stacks run side by side and single jobs alternate between them, so both sides meet the same machine.

    make bench-pair BASE=HEAD~1 PAIRS=80      # python -m scripts.bench_pair --base HEAD~1 --pairs 80
    make bench-pair                           # BASE=HEAD: uncommitted changes, or with none an A/A run (the floor)

Why not two runs of `make bench-system`: on the 2-core development VM the machine's own speed drifts from minute to
minute, and the added latency drifts with it, far more than the cuts being measured. In twelve one-client runs of
the same code (30 s windows, one afternoon) the render p50 ranged 872–1110 ms and the added latency 31–59 ms,
rising with it. Run-after-run comparisons of two variants (hiredis, SeaweedFS's `-filer.saveToFilerLimit`) swung
by up to 28 ms either way. Alternating single jobs puts both sides in the same minute: an A/A run of 60 pairs came
out at 0.0 ms (97 % interval -2.9 to +2.5 ms), and both variants at +0.5 and -0.3 ms over 80 pairs: nothing.

Prints each side's p50 of (latency − the job's own render), as `make bench-system` computes it, and the median
of the per-pair differences (working tree − base) with a distribution-free 95 % interval (the sign test's: order
statistics of the differences).

The base is checked out with `git worktree` into a temporary folder (removed at the end) that shares this
checkout's `var/` (the model files); each stack is started by this file's `--serve` mode, run from its own tree.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# Nothing from the project is imported at module level: `--serve` runs this file inside the *base* tree, whose
# modules must be the ones that load (PYTHONPATH points there).

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WARM_UP_JOBS = 8  # per side, before the pairs: first renders and connections are slower


@dataclass(frozen=True)
class MedianInterval:
    median: float
    low: float
    high: float
    confidence: float  # what the interval actually covers (order statistics give a little more than asked)


def median_interval(values: Sequence[float], confidence: float = 0.95) -> MedianInterval:
    """The median of `values` and the sign test's interval for it: the k-th smallest and k-th largest value, with
    k the largest rank whose binomial tail (n, ½) stays within (1 − confidence) / 2. With too few values for any
    such k, the interval is the whole range."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    n = len(ordered)
    tail = (1 - confidence) / 2
    k, below = 0, 0.0  # below: P(Binomial(n, ½) ≤ k − 1)
    while k < n // 2 and below + math.comb(n, k) / 2**n <= tail:
        below += math.comb(n, k) / 2**n
        k += 1
    if k == 0:
        return MedianInterval(statistics.median(ordered), ordered[0], ordered[-1], 1.0)
    return MedianInterval(statistics.median(ordered), ordered[k - 1], ordered[n - k], 1 - 2 * below)


def paired_differences(base: Sequence[float], new: Sequence[float]) -> list[float]:
    """new − base, pair by pair (the two jobs of a pair ran back to back)."""
    if len(base) != len(new):
        raise ValueError(f"{len(base)} base values against {len(new)} new ones")
    return [n - b for b, n in zip(base, new)]


def serve_command(tree: Path, ready_file: Path, overrides: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """How to start one side's stack: this file's `--serve`, with `tree`'s modules first on the path."""
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(ready_file)]
    for item in overrides:
        command += ["--set", item]
    return command, {**os.environ, "PYTHONPATH": str(tree)}


# --- one side ---


def serve(ready_file: Path, overrides: dict[str, str]) -> None:
    """Start a stack with the deployed worker plan, write its URLs to `ready_file`, hold it until stdin closes."""
    from scripts.chaos.stack import ChaosStack

    settings: dict[str, Any] = {"upload_rate_limit": "", "worker_processes": 0, **overrides}
    with (
        tempfile.TemporaryDirectory(prefix="bench-pair-") as workdir,
        ChaosStack(Path(workdir), **settings) as stack,
    ):
        ready_file.write_text(json.dumps({"gateway": stack.gateway_url, "redis": stack.redis.url}))
        sys.stdin.read()


@dataclass(frozen=True)
class Side:
    name: str
    gateway: str
    redis: str


@contextmanager
def running_side(name: str, tree: Path, overrides: Sequence[str], log_dir: Path) -> Iterator[Side]:
    slug = name.replace(" ", "-")
    ready = log_dir / f"{slug}.json"
    ready.unlink(missing_ok=True)  # a previous run's: its stack is gone
    command, env = serve_command(tree, ready, overrides)
    with open(log_dir / f"{slug}.log", "w") as log:
        process = subprocess.Popen(command, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=log, stderr=log)
        try:
            while not ready.exists():
                if process.poll() is not None:
                    raise SystemExit(f"the {name} stack did not start; see {log_dir / f'{slug}.log'}")
                time.sleep(0.5)
            urls = json.loads(ready.read_text())
            yield Side(name, urls["gateway"], urls["redis"])
        finally:
            _stop(process, process.stdin)


def _stop(process: subprocess.Popen[bytes], stdin: IO[bytes] | None) -> None:
    if stdin is not None:
        stdin.close()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def base_tree(revision: str) -> Iterator[Path]:
    """`revision` checked out beside this checkout, sharing its `var/` (models)."""
    with tempfile.TemporaryDirectory(prefix="bench-pair-base-") as parent:
        tree = Path(parent) / "tree"
        subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "worktree", "add", "--detach", "--quiet", str(tree), revision], check=True
        )
        try:
            (tree / "var").symlink_to(PROJECT_ROOT / "var")
            yield tree
        finally:
            subprocess.run(["git", "-C", str(PROJECT_ROOT), "worktree", "remove", "--force", str(tree)], check=False)


# --- the pairs ---


class Jobs:
    """Runs one job on a side (upload, final event, download) and returns what it added over its own render."""

    def __init__(self, side: Side, photo: bytes, style: str) -> None:
        import redis
        import requests

        from scripts.bench_system import Driver
        from shared.jobs import JobStore

        self.side = side
        self._driver = Driver(side.gateway, photo, "sse", style)
        self._session = requests.Session()
        self._jobs = JobStore(redis.Redis.from_url(side.redis), ttl_seconds=3600)

    def added_seconds(self) -> float:
        phases: dict[str, Any] = {}
        began = time.monotonic()
        if not self._driver.one_job(self._session, phases):
            raise SystemExit(f"a job on the {self.side.name} side did not finish: {phases}")
        latency = time.monotonic() - began
        job = self._jobs.get(phases["job_id"])
        if job is None:
            raise SystemExit(f"the {self.side.name} side's job {phases['job_id']} has no record")
        return latency - sum(job.timings.values())


def run_pairs(base: Jobs, new: Jobs, pairs: int) -> tuple[list[float], list[float]]:
    """Added seconds per job on each side; each pair runs its two jobs back to back, the order alternating (A B,
    B A, ...) so that neither side always follows the other."""
    from tqdm import tqdm

    for _ in range(WARM_UP_JOBS):
        base.added_seconds()
        new.added_seconds()
    base_added: list[float] = []
    new_added: list[float] = []
    for index in tqdm(range(pairs), desc="pairs"):
        if index % 2 == 0:
            base_added.append(base.added_seconds())
            new_added.append(new.added_seconds())
        else:
            new_added.append(new.added_seconds())
            base_added.append(base.added_seconds())
    return base_added, new_added


def report(revision: str, base_added: list[float], new_added: list[float]) -> str:
    difference = median_interval([round(d * 1000, 1) + 0.0 for d in paired_differences(base_added, new_added)])
    return (
        f"added latency at 1 client, p50: base ({revision}) {statistics.median(base_added) * 1000:.1f} ms, "
        f"working tree {statistics.median(new_added) * 1000:.1f} ms\n"
        f"working tree − base, median of {len(base_added)} pairs: **{difference.median:+.1f} ms** "
        f"({difference.confidence:.0%} interval {difference.low:+.1f} to {difference.high:+.1f} ms)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD", help="the revision to compare the working tree with")
    parser.add_argument("--pairs", type=int, default=80)
    parser.add_argument("--style", default="auto")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a Settings override for the working tree's stack only (with --base HEAD: an A/B of a setting)",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve, dict(item.split("=", 1) for item in args.set))
        return

    from scripts.support import samples

    photo = samples.grace_hopper_path().read_bytes()
    with ExitStack() as stack:
        logs = PROJECT_ROOT / "var" / "bench-pair"  # the stacks' output, kept for a look after a failed start
        logs.mkdir(parents=True, exist_ok=True)
        tree = stack.enter_context(base_tree(args.base))
        print(f"starting the base ({args.base}) and the working tree's stacks side by side…", flush=True)
        base = stack.enter_context(running_side("base", tree, [], logs))
        new = stack.enter_context(running_side("working tree", PROJECT_ROOT, args.set, logs))
        base_added, new_added = run_pairs(Jobs(base, photo, args.style), Jobs(new, photo, args.style), args.pairs)
    print(report(args.base, base_added, new_added))


if __name__ == "__main__":
    main()
