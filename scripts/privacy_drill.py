"""Privacy drill: many jobs through the real system while workers are SIGKILLed mid-job, then the figures.

Starts its own Redis and SeaweedFS (under var/drill), a prefork Celery worker, the janitor and the gateway
app, uploads --jobs photos (faces and non-faces) at --rate per second, SIGKILLs the worker --kills times while it
is rendering (alternately the render process alone, which Celery requeues at once, and the whole worker,
whose task the broker redelivers after the visibility timeout), and samples the bucket every half second for the
oldest stored source. Prints the job outcomes, `portraits janitor report`'s figures and the oldest source ever
seen. Run with `make drill`.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import threading
import time
from collections import Counter

from tqdm import tqdm

from scripts import devstack
from scripts.support import samples
from scripts.support.service_settings import service_settings
from scripts.worker_process import WorkerProcess
from services.gateway.app import create_app
from services.janitor.main import run as run_janitor
from services.janitor.report import build_report, max_ages, percentile
from shared.audit import ObjectKind
from shared.backends import Backends
from shared.logging import configure_logging
from shared.settings import PROJECT_ROOT, get_settings

DRILL_DIR = PROJECT_ROOT / "var" / "drill"


class SourceWatch(threading.Thread):
    """Lists the sources bucket twice a second and remembers the oldest object it ever saw."""

    def __init__(self, backends: Backends) -> None:
        super().__init__(daemon=True)
        self._backends = backends
        self.oldest_seen = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            now = time.time()
            for _, modified in self._backends.storage.list(self._backends.settings.sources_bucket, "sources/"):
                self.oldest_seen = max(self.oldest_seen, now - modified)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=120)
    parser.add_argument("--rate", type=float, default=2.0, help="uploads per second")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of the worker while it renders")
    args = parser.parse_args()

    shutil.rmtree(DRILL_DIR, ignore_errors=True)
    DRILL_DIR.mkdir(parents=True)
    redis_server = devstack.start_redis(DRILL_DIR / "redis")
    s3_server = devstack.start_seaweedfs(DRILL_DIR / "seaweedfs")
    settings = service_settings(
        redis_server.url,
        s3_server,
        output_size=512,
        result_ttl_seconds=3600,
        log_level="WARNING",
        # Short delivery limits so a killed worker's jobs come back within the drill (production: 60/90/300 s).
        task_soft_time_limit=15,
        task_hard_time_limit=20,
        visibility_timeout=30,
        model_dir=get_settings().model_dir,
    )
    configure_logging(settings, "drill")
    backends = Backends.connect(settings)
    stop_janitor = threading.Event()
    threading.Thread(target=run_janitor, args=(settings, stop_janitor), daemon=True).start()
    watch = SourceWatch(backends)
    watch.start()
    worker = WorkerProcess(settings, DRILL_DIR / "worker-0").start()
    client = create_app(settings).test_client()
    photos = [
        path.read_bytes()
        for path in (
            samples.astronaut_path(),
            samples.grace_hopper_path(),
            samples.astronaut_path(),
            samples.coffee_path(),
        )
    ]
    kill_at = {round(args.jobs * (k + 1) / (args.kills + 1)) for k in range(args.kills)}
    job_ids: list[str] = []
    kills = 0
    started = time.time()
    try:
        for n in tqdm(range(args.jobs), desc="uploading", unit="job"):
            data = photos[n % len(photos)]
            response = client.post("/v1/portraits", data={"image": (io.BytesIO(data), "p.jpg")})
            job_ids.append(response.get_json()["id"])
            if n in kill_at:
                deadline = time.time() + 20
                while worker.processes_in("busy") < 1 and time.time() < deadline:
                    time.sleep(0.05)
                kills += 1
                if kills % 2:
                    # The render process only: Celery's parent sees it die and requeues the task at once
                    # (task_reject_on_worker_lost), then forks a fresh child.
                    os.kill(worker.child_pids()[0], signal.SIGKILL)
                else:
                    # The whole worker, as when a node dies: the task waits out the visibility timeout.
                    worker.process.kill()
                    worker = WorkerProcess(settings, DRILL_DIR / f"worker-{kills}").start()
            time.sleep(max(0.0, started + (n + 1) / args.rate - time.time()))
        with tqdm(total=len(job_ids), desc="finishing", unit="job") as bar:
            deadline = time.time() + 600
            while time.time() < deadline:
                states = [backends.jobs.get(job_id) for job_id in job_ids]
                finished = sum(1 for job in states if job is not None and job.state.value in ("done", "failed"))
                bar.n = finished
                bar.refresh()
                if finished == len(job_ids):
                    break
                time.sleep(1)
        time.sleep(settings.janitor_interval_seconds * 2)
        outcomes: Counter[str] = Counter()
        processing, waiting = [], []
        for job_id in job_ids:
            job = backends.jobs.get(job_id)
            if job is None:  # finished a moment ago, so only a TTL far shorter than the drill could do this
                raise SystemExit(f"the record of job {job_id} is gone before its outcome was read")
            outcomes[job.state.value if job.error_code is None else f"{job.state.value}:{job.error_code}"] += 1
            if job.started_at and job.finished_at:
                processing.append(job.finished_at - job.started_at)
                waiting.append(job.started_at - job.created_at)
        print(f"\n{len(job_ids)} jobs in {time.time() - started:.0f} s, worker SIGKILLed {kills} times mid-job")
        print("outcomes: " + ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items())))
        for name, values in (("queue wait", waiting), ("processing", processing)):
            print(f"{name} (s): p50 {percentile(sorted(values), 50):.2f}, p99 {percentile(sorted(values), 99):.2f}")
        print(f"sources still stored: {sum(1 for _ in backends.storage.list(settings.sources_bucket, 'sources/'))}")
        print(
            f"oldest source ever seen in the bucket: {watch.oldest_seen:.1f} s "
            f"(max age {settings.source_max_age_seconds} s)\n"
        )
        entries = [entry for entry in backends.audit.entries() if entry.kind is ObjectKind.SOURCE]
        print(build_report(entries, backends.eraser.schedule, max_ages(settings)))
    finally:
        watch.stop.set()
        stop_janitor.set()
        worker.process.kill()
        s3_server.kill()
        redis_server.kill()


if __name__ == "__main__":
    main()
