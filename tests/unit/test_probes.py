"""Exec probes for the worker and janitor decide from their metrics."""

from __future__ import annotations

from services.janitor import probe as janitor_probe
from services.worker import probe as worker_probe
from shared.settings import Settings


def worker_samples(**states: float):
    return {("portraits_worker_processes", (("state", state),)): value for state, value in states.items()}


def test_worker_probe():
    assert worker_probe.verdict(worker_samples(ready=1, busy=0, failed=0), ready=True) is None
    assert worker_probe.verdict(worker_samples(ready=0, busy=1), ready=True) is None
    assert "no worker process" in worker_probe.verdict(worker_samples(loading=1), ready=True)
    assert worker_probe.verdict(worker_samples(loading=1), ready=False) is None  # alive while loading
    assert "failed" in worker_probe.verdict(worker_samples(ready=1, failed=1), ready=False)


def test_janitor_probe():
    settings = Settings(janitor_interval_seconds=5)
    sample = {("portraits_janitor_last_successful_sweep_timestamp_seconds", ()): 1000.0}
    assert janitor_probe.verdict(sample, settings, now=1040.0) is None
    assert "no successful sweep" in janitor_probe.verdict(sample, settings, now=1046.0)
    assert janitor_probe.verdict({}, settings, now=1046.0)  # never swept
