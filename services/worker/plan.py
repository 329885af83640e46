"""The worker's thread and process plan (#11): how many render processes a worker runs, and how many torch threads
each gets. Torch-free, so the Celery parent can size its pool without importing torch or touching CUDA.

Measured on the 2-core development machine with `make bench-system` (Grace Hopper, `auto`, 768 px;
docs/performance.md, "The whole stack under load"):

    plan                                   8 clients        1 client (latency p50)
    1 process × 2 threads                  1.87 portraits/s 0.52 s
    2 processes × 1 thread                 2.15 portraits/s 0.88 s
    1 process × 2 threads, OMP passive     1.50 portraits/s 0.63 s

Two torch threads on two cores wait at every parallel region for the slower of the two, and anything else that
runs (the gateway, S3, Redis, the janitor) makes one of them the slower; a process per core with one thread each
keeps both cores painting, at the price of a slower render when only one job is waiting. A loaded site is where
throughput matters, so the CPU default is one render process per core. OpenMP's passive wait policy (threads sleep
instead of spinning between regions) cost 20 %: it is left at its default. On a CUDA host one process drives the
GPU (each process holds the networks in GPU memory), with torch's own CPU threads for decoding and the rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shared.settings import Settings

# The devices a host with an NVIDIA driver exposes; their absence means torch could not use CUDA either.
NVIDIA_CONTROL_DEVICE = Path("/dev/nvidiactl")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class Plan:
    processes: int  # render processes per worker (Celery's pool)
    torch_threads: int | None  # per process; None leaves torch's default


def available_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup v2 CPU quota (a Kubernetes CPU
    limit shows as a quota, not as fewer cores)."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def uses_gpu(settings: Settings) -> bool:
    """Whether the render processes will drive a GPU: `device`, or for `auto` whether the host has the NVIDIA
    driver's devices (the engine then takes CUDA if torch sees it; with a CPU build of torch it runs on the CPU
    in one process with every core, which is the 1 × N plan above: slower under load, never oversubscribed)."""
    if settings.device != "auto":
        return settings.device == "cuda"
    return NVIDIA_CONTROL_DEVICE.exists()


def resolve_plan(settings: Settings) -> Plan:
    if uses_gpu(settings):
        return Plan(processes=settings.worker_processes or 1, torch_threads=settings.torch_threads or None)
    cores = available_cores()
    processes = settings.worker_processes or cores
    return Plan(processes=processes, torch_threads=settings.torch_threads or max(1, cores // processes))
