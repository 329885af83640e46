"""The worker process's lifecycle as an explicit state, exported as a metric and used by the liveness probe."""

from __future__ import annotations

from enum import StrEnum


class WorkerState(StrEnum):
    STARTING = "starting"  # process up, models not loaded yet
    LOADING = "loading"  # verifying weights, loading networks, warming up
    READY = "ready"  # idle, waiting for a task
    BUSY = "busy"  # rendering a job
    FAILED = "failed"  # models could not be loaded: this process will never render
    STOPPING = "stopping"  # warm shutdown: finishing the current task, taking no new one
