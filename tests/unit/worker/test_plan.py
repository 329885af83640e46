"""The worker's thread and process plan (#11): one render process per core with one torch thread each on the CPU,
one process with CUDA; explicit settings win; a CPU quota caps the cores."""

from __future__ import annotations

import pytest

from services.worker import plan
from shared.settings import Settings


@pytest.fixture
def cores(monkeypatch):
    def set_cores(count: int) -> None:
        monkeypatch.setattr(plan.os, "sched_getaffinity", lambda _pid: set(range(count)))

    return set_cores


def test_cpu_default_is_a_process_per_core_with_one_thread_each(cores, monkeypatch, tmp_path):
    cores(4)
    monkeypatch.setattr(plan, "CGROUP_CPU_MAX", tmp_path / "absent")
    assert plan.resolve_plan(Settings(device="cpu")) == plan.Plan(processes=4, torch_threads=1)


def test_explicit_processes_share_the_cores_and_explicit_threads_win(cores, monkeypatch, tmp_path):
    cores(8)
    monkeypatch.setattr(plan, "CGROUP_CPU_MAX", tmp_path / "absent")
    assert plan.resolve_plan(Settings(device="cpu", worker_processes=2)) == plan.Plan(2, 4)
    assert plan.resolve_plan(Settings(device="cpu", worker_processes=3)) == plan.Plan(3, 2)
    assert plan.resolve_plan(Settings(device="cpu", worker_processes=16)) == plan.Plan(16, 1)
    assert plan.resolve_plan(Settings(device="cpu", torch_threads=3)) == plan.Plan(8, 3)


def test_a_cgroup_cpu_quota_caps_the_cores(cores, monkeypatch, tmp_path):
    cores(16)
    quota = tmp_path / "cpu.max"
    quota.write_text("300000 100000\n")  # a Kubernetes limit of 3 CPUs
    monkeypatch.setattr(plan, "CGROUP_CPU_MAX", quota)
    assert plan.available_cores() == 3
    quota.write_text("max 100000\n")
    assert plan.available_cores() == 16
    quota.write_text("50000 100000\n")  # half a CPU: still one process
    assert plan.available_cores() == 1


def test_cuda_is_one_process_with_torchs_threads(cores, monkeypatch, tmp_path):
    cores(16)
    assert plan.resolve_plan(Settings(device="cuda")) == plan.Plan(processes=1, torch_threads=None)
    monkeypatch.setattr(plan, "NVIDIA_CONTROL_DEVICE", tmp_path / "nvidiactl")
    monkeypatch.setattr(plan, "CGROUP_CPU_MAX", tmp_path / "absent")
    assert plan.resolve_plan(Settings(device="auto")).processes == 16  # no NVIDIA driver: the CPU plan
    (tmp_path / "nvidiactl").touch()
    assert plan.resolve_plan(Settings(device="auto")).processes == 1
