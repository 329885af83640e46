"""System benchmark (issue 11): the bare engine against the whole stack, on the same photo, in the same run.

1. The bare engine renders the photo back to back in a process of its own (`--engine-only`), with the worker's
   settings: its portraits/s is the ceiling the stack is held to.
2. The real stack starts (Redis, SeaweedFS with SigV4, gunicorn gateway, one prefork Celery worker, janitor —
   `scripts/chaos/stack.py`), and a bounded driver runs 1, 2, 4, 8 and 16 clients, each looping
   upload → wait → download, for a warm-up and then a measured window.
3. It prints, per client count, portraits/s, p50/p99 latency (upload sent → portrait downloaded) and the ratio
   system / engine; at one client also the latency the system adds over the engine's own render.

Clients wait as the website does, on the event stream (`--wait sse`), or poll every 50 ms (`--wait poll`,
issue 11's original figures). The engine runs first and alone; nothing else should run on the machine.

    python -m scripts.bench_system                      # `make bench-system`; ~6 min on 2 cores
    python -m scripts.bench_system --clients 1 8 --seconds 20

Long on purpose: one benchmark, its driver, its timeline and its report; split, a reader
would follow one measurement across files.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import requests
from tqdm import tqdm

from scripts.chaos.load import percentile
from shared.settings import PROJECT_ROOT

POLL_SECONDS = 0.05
ENGINE_WARM_UP = 3  # renders before the engine's clock starts (kernel choice, allocator)


# --- the bare engine, in a process of its own ---


class EngineFigures(TypedDict):
    """One engine process's figures: what `--engine-only` prints as JSON and measure_engine reads back."""

    portraits_per_s: float
    p50: float
    p99: float
    renders: int
    stages: dict[str, float]  # stage → p50 seconds


def engine_only(photo: Path, seconds: float, style: str) -> EngineFigures:
    from services.worker.engine.config import load_engine_config
    from services.worker.engine.pipeline import PortraitEngine

    engine = PortraitEngine(load_engine_config())
    data = photo.read_bytes()
    for _ in range(ENGINE_WARM_UP):
        engine.render(data, style=style)
    times: list[float] = []
    stages: dict[str, list[float]] = {}
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        began = time.perf_counter()
        portrait = engine.render(data, style=style)
        times.append(time.perf_counter() - began)
        for stage, spent in portrait.timings.items():
            stages.setdefault(stage, []).append(spent)
    return {
        "portraits_per_s": len(times) / sum(times),
        "p50": percentile(times, 50),
        "p99": percentile(times, 99),
        "renders": len(times),
        "stages": {stage: percentile(v, 50) for stage, v in stages.items()},
    }


def measure_engine(photo: Path, seconds: float, style: str, env: dict[str, str], processes: int = 1) -> dict[str, Any]:
    """The bare engine in `processes` processes side by side (as the worker's plan runs them): their summed
    portraits/s, and the first one's render p50 and stage p50s."""
    command = [
        sys.executable,
        "-m",
        "scripts.bench_system",
        "--engine-only",
        "--photo",
        str(photo),
        "--seconds",
        str(seconds),
        "--style",
        style,
    ]
    children = [
        subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    results = []
    for child in children:
        output, _ = child.communicate()
        if child.returncode:
            raise SystemExit(f"the engine benchmark failed (exit {child.returncode})")
        results.append(json.loads(output.strip().splitlines()[-1]))
    return {**results[0], "portraits_per_s": sum(r["portraits_per_s"] for r in results), "processes": processes}


# --- the driver ---


BURST_POLL_SECONDS = 3.0


@dataclass
class Finished:
    latency: float
    at: float  # monotonic time the portrait was downloaded
    ok: bool
    upload: float = 0.0  # POST sent → 202 read
    download: float = 0.0  # result URL requested → portrait read
    job_id: str = ""
    sent_at: float = 0.0  # wall clock, to line up with the job record's timestamps
    event_at: float = 0.0  # wall clock: the final event (or poll answer) read


@dataclass
class Level:
    clients: int
    finished: list[Finished] = field(default_factory=list)
    refused: int = 0  # 503/429 answers to uploads
    errors: int = 0  # anything else that is not a painted, downloaded portrait

    def window(self, start: float, end: float) -> list[Finished]:
        return [f for f in self.finished if start <= f.at < end and f.ok]


class Driver:
    """`clients` threads, each uploading, waiting for its portrait and downloading it, one job at a time."""

    def __init__(self, base_url: str, photo: bytes, wait: str, style: str) -> None:
        self.base_url, self.photo, self.wait, self.style = base_url, photo, wait, style

    def run(self, clients: int, warm_up: float, seconds: float) -> tuple[Level, float, float]:
        level = Level(clients)
        stop = threading.Event()
        lock = threading.Lock()
        threads = [threading.Thread(target=self._client, args=(level, lock, stop), daemon=True) for _ in range(clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        window_start = started + warm_up
        window_end = window_start + seconds
        stop.wait(window_end - time.monotonic())
        stop.set()
        for thread in threads:
            thread.join(timeout=130)
        return level, window_start, window_end

    def _client(self, level: Level, lock: threading.Lock, stop: threading.Event) -> None:
        session = requests.Session()
        while not stop.is_set():
            began = time.monotonic()
            phases: dict[str, Any] = {}
            try:
                ok = self.one_job(session, phases)
            except requests.RequestException:
                ok = False
            if ok is None:  # refused: back off as told
                with lock:
                    level.refused += 1
                stop.wait(1.0)
                continue
            with lock:
                level.finished.append(Finished(time.monotonic() - began, time.monotonic(), ok, **phases))
                level.errors += int(not ok)

    def one_job(self, session: requests.Session, phases: dict[str, Any]) -> bool | None:
        began = time.monotonic()
        phases["sent_at"] = time.time()
        response = session.post(
            self.base_url + "/v1/portraits",
            data={"style": self.style},
            files={"image": ("selfie.jpg", self.photo, "image/jpeg")},
            timeout=30,
        )
        phases["upload"] = time.monotonic() - began
        if response.status_code in (429, 503):
            return None
        if response.status_code != 202:
            return False
        phases["job_id"] = response.json()["id"]
        status_url = f"{self.base_url}/v1/portraits/{phases['job_id']}"
        job = self._follow(session, status_url) if self.wait == "sse" else self._poll(session, status_url)
        phases["event_at"] = time.time()
        if job is None or job["status"] != "done":
            return False
        began = time.monotonic()
        ok = session.get(job["result_url"], timeout=30).status_code == 200
        phases["download"] = time.monotonic() - began
        return ok

    def _poll(self, session: requests.Session, url: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job: dict[str, Any] = session.get(url, timeout=10).json()  # the API's job object (requests: Any)
            if job["status"] in ("done", "failed"):
                return job
            time.sleep(POLL_SECONDS)
        return None

    def _follow(self, session: requests.Session, url: str) -> dict[str, Any] | None:
        with session.get(
            url + "/events", headers={"Accept": "text/event-stream"}, stream=True, timeout=(10, 60)
        ) as response:
            event = None
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("event:"):
                    event = line.removeprefix("event:").strip()
                elif line.startswith("data:") and event in ("done", "failed"):
                    job: dict[str, Any] = json.loads(line.removeprefix("data:"))  # the final event's job object
                    return job
        return None


PHASES = (
    ("upload", "client: upload sent → 202 read (overlaps the next two rows)"),
    ("before_record", "upload sent → job record's `created_at` (HTTP, parse, decode, re-encode)"),
    ("pickup", "`created_at` → render process starts the job (seal, S3 put, record, enqueue, Celery)"),
    ("render", "the engine's render in the system (sum of its stages)"),
    ("around", "job started → done, minus the render (claim, fetch, unseal, store, records)"),
    ("event", "job done → the client has the final event (SSE or poll)"),
    ("download", "client: result URL requested → portrait read"),
)


@dataclass(frozen=True)
class _Timeline:
    """The times of a job that ran to its end, from its record (where started_at and finished_at are Optional)."""

    created_at: float
    started_at: float
    finished_at: float
    timings: dict[str, float]


def server_side(stack: Any, done: list[Finished]) -> dict[str, float]:
    """p50s from the job records' own timestamps (one clock: everything runs on this machine)."""
    from shared.jobs import JobStore

    jobs = JobStore(stack.redis_client(), stack.settings.job_ttl_seconds)
    pairs = [
        (f, _Timeline(job.created_at, job.started_at, job.finished_at, job.timings))
        for f, job in ((f, jobs.get(f.job_id)) for f in done)
        if job and job.started_at and job.finished_at
    ]
    records = [job for _, job in pairs]
    renders = [sum(job.timings.values()) for job in records]
    stages = (
        {
            stage: percentile([job.timings[stage] for job in records if stage in job.timings], 50)
            for stage in records[0].timings
        }
        if records
        else {}
    )
    print("render stages in the system (p50 ms): " + ", ".join(f"{k} {v * 1000:.0f}" for k, v in stages.items()))
    return {
        "added": percentile([f.latency - r for (f, _), r in zip(pairs, renders)], 50),
        "before_record": percentile([job.created_at - f.sent_at for f, job in pairs], 50),
        "event": percentile([f.event_at - job.finished_at for f, job in pairs], 50),
        "pickup": percentile([job.started_at - job.created_at for job in records], 50),
        "render": percentile(renders, 50),
        "around": percentile([job.finished_at - job.started_at - r for job, r in zip(records, renders)], 50),
    }


# --- a burst beyond capacity ---


@dataclass
class Burst:
    sent: int
    by_status: dict[int, int]
    with_retry_after: int  # 503s that carried Retry-After and our JSON envelope
    outcomes: dict[str, int]  # accepted jobs by how they ended: done, failed:<code>, open (unfinished)
    seconds: float  # from the first upload to the last accepted job's end


def burst(base_url: str, photo: bytes, uploads: int, style: str, threads: int = 32) -> Burst:
    """`uploads` at once (as fast as `threads` connections send them), then every accepted job followed to its end
    (issue 11: beyond capacity the gateway must refuse with 503 + Retry-After, not accept jobs that expire)."""
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()

    def upload(_: int) -> tuple[int, str | None, bool]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        response = session.post(
            base_url + "/v1/portraits",
            data={"style": style},
            files={"image": ("selfie.jpg", photo, "image/jpeg")},
            timeout=60,
        )
        enveloped = (
            response.status_code == 503 and bool(response.headers.get("Retry-After")) and "error" in response.json()
        )
        return response.status_code, response.json().get("id") if response.status_code == 202 else None, enveloped

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        answers = list(tqdm(pool.map(upload, range(uploads)), total=uploads, desc="burst uploads", leave=False))
    by_status: dict[int, int] = {}
    for status, _, _ in answers:
        by_status[status] = by_status.get(status, 0) + 1
    open_jobs = {job_id for _, job_id, _ in answers if job_id}
    outcomes: dict[str, int] = {}
    session = requests.Session()
    deadline = time.monotonic() + 200  # past the source's maximum age: whatever is still open by then is lost
    with tqdm(total=len(open_jobs), desc="burst jobs", leave=False) as bar:
        while open_jobs and time.monotonic() < deadline:
            for job_id in list(open_jobs):
                job = session.get(f"{base_url}/v1/portraits/{job_id}", timeout=10).json()
                if job["status"] in ("done", "failed"):
                    label = "done" if job["status"] == "done" else f"failed:{job['error']['code']}"
                    outcomes[label] = outcomes.get(label, 0) + 1
                    open_jobs.discard(job_id)
                    bar.update()
            # Every 3 s, not every second: the first runs polled 230 jobs a second, a quarter of this machine's CPU
            # taken from the renders by the benchmark itself (the page waits on SSE instead).
            time.sleep(BURST_POLL_SECONDS)
    if open_jobs:
        outcomes["open"] = len(open_jobs)
    return Burst(
        uploads, by_status, sum(1 for *_, enveloped in answers if enveloped), outcomes, time.monotonic() - started
    )


# --- the run ---


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per client count")
    parser.add_argument("--warm-up", type=float, default=8.0, help="seconds of load before each window")
    parser.add_argument("--wait", choices=("sse", "poll"), default="sse")
    parser.add_argument("--style", default="auto")
    parser.add_argument("--photo", type=Path, default=None, help="default: Grace Hopper")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a Settings override for the stack and the engine (e.g. --set batch_max_size=4)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Celery workers of one render process each (the thread plan: e.g. 2 workers with --set torch_threads=1)",
    )
    parser.add_argument("--burst", type=int, default=300, help="uploads sent at once after the client counts (0: none)")
    parser.add_argument("--engine-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.photo is None:
        from scripts.support import samples

        args.photo = samples.grace_hopper_path()
    if args.engine_only:
        print(json.dumps(engine_only(args.photo, args.seconds, args.style)))
        return
    overrides = dict(item.split("=", 1) for item in args.set)
    env = {**os.environ, **{f"PORTRAITS_{name.upper()}": value for name, value in overrides.items()}}

    print(
        f"photo {args.photo.name}, style {args.style}, clients wait by {args.wait}, {args.workers} worker(s), "
        f"{args.seconds:.0f} s windows, overrides {overrides or 'none'}",
        flush=True,
    )
    from scripts.chaos.stack import ChaosStack
    from services.worker.plan import resolve_plan
    from shared.settings import Settings

    stack_overrides: dict[str, Any] = {"upload_rate_limit": "", "worker_processes": 0, **overrides}  # 0: deployed
    plan = resolve_plan(Settings(**stack_overrides))
    processes = plan.processes * args.workers
    engine_env = {**env, **({"PORTRAITS_TORCH_THREADS": str(plan.torch_threads)} if plan.torch_threads else {})}
    print(
        f"the worker plan: {args.workers} worker(s) × {plan.processes} render process(es) × "
        f"{plan.torch_threads or 'default'} torch thread(s)",
        flush=True,
    )
    engines: dict[int, dict[str, Any]] = {}
    for count in sorted({1, processes}):
        print(f"bare engine, {count} process(es) side by side, same threads…", flush=True)
        engines[count] = measure_engine(args.photo, args.seconds, args.style, engine_env, count)
        print(
            f"  {engines[count]['portraits_per_s']:.2f} portraits/s, render p50 "
            f"{engines[count]['p50'] * 1000:.0f} ms; stages (p50 ms): "
            + ", ".join(f"{k} {v * 1000:.0f}" for k, v in engines[count]["stages"].items()),
            flush=True,
        )

    rows = []
    phases: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-system-") as workdir,
        ChaosStack(Path(workdir), workers=args.workers, **stack_overrides) as stack,
    ):
        driver = Driver(stack.gateway_url, args.photo.read_bytes(), args.wait, args.style)
        for clients in tqdm(args.clients, desc="client counts"):
            level, start, end = driver.run(clients, args.warm_up, args.seconds)
            done = level.window(start, end)
            latencies = [f.latency for f in done]
            rows.append(
                (
                    clients,
                    len(done) / (end - start),
                    percentile(latencies, 50) if latencies else 0.0,
                    percentile(latencies, 99) if latencies else 0.0,
                    level.refused,
                    level.errors,
                )
            )
            if clients == 1 and done:
                phases = {name: percentile([getattr(f, name) for f in done], 50) for name in ("upload", "download")}
                phases |= server_side(stack, done)
        flood = burst(stack.gateway_url, args.photo.read_bytes(), args.burst, args.style) if args.burst else None
    print(
        "\nbare engine: "
        + "; ".join(
            f"{count} process(es): **{e['portraits_per_s']:.2f} portraits/s**, render p50 {e['p50'] * 1000:.0f} ms"
            for count, e in engines.items()
        )
        + "\n"
    )
    print("| clients | portraits/s | system / engine | latency p50 | p99 | refused | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for clients, rate, p50, p99, refused, errors in rows:
        # Against the engine given as many jobs at once as the clients keep open, up to the plan's processes.
        engine = engines[1 if clients < processes else processes]
        print(
            f"| {clients} | {rate:.2f} | **{rate / engine['portraits_per_s']:.2f}** | {p50 * 1000:.0f} ms | "
            f"{p99 * 1000:.0f} ms | {refused} | {errors} |"
        )
    one = next((row for row in rows if row[0] == 1), None)
    if one is not None and one[2]:
        print(
            f"\nadded latency at 1 client, p50 over jobs of (latency − that job's own render): "
            f"**{phases['added'] * 1000:.0f} ms** (system p50 − the bare engine's render p50: "
            f"{(one[2] - engines[1]['p50']) * 1000:.0f} ms)"
        )
        print("where a job's time goes at 1 client (p50 of each):\n")
        print("| from → to | ms |\n|---|---:|")
        for name, label in PHASES:
            print(f"| {label} | {phases[name] * 1000:.0f} |")
    if flood is not None:
        answers = ", ".join(f"{count} × {status}" for status, count in sorted(flood.by_status.items()))
        ended = ", ".join(f"{count} {label}" for label, count in sorted(flood.outcomes.items())) or "none"
        print(
            f"\nburst of {flood.sent} uploads at once: {answers}; 503s with Retry-After and our envelope: "
            f"{flood.with_retry_after}; the accepted jobs ended: {ended} ({flood.seconds:.0f} s)"
        )


if __name__ == "__main__":
    main()
