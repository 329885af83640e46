"""`python -m services.worker.probe [--ready]`: liveness — no worker process stuck in `failed` (models
could not load) and at least one alive; readiness (`--ready`) — at least one process ready or busy."""

from __future__ import annotations

import sys

from services.worker.lifecycle import WorkerState
from shared.probe import Samples, run_probe
from shared.settings import get_settings


def _count(samples: Samples, state: WorkerState) -> float:
    return samples.get(("portraits_worker_processes", (("state", state.value),)), 0.0)


def verdict(samples: Samples, *, ready: bool) -> str | None:
    if _count(samples, WorkerState.FAILED) > 0:
        return "a worker process failed to load its models"
    working = _count(samples, WorkerState.READY) + _count(samples, WorkerState.BUSY)
    if ready and working < 1:
        return "no worker process is ready"
    return None


if __name__ == "__main__":
    want_ready = "--ready" in sys.argv[1:]
    sys.exit(run_probe(get_settings().worker_metrics_port, lambda s: verdict(s, ready=want_ready)))
