"""Multiprocess worker metrics forget render processes that were killed without a chance to say so."""

from __future__ import annotations

import os
import subprocess
import sys

from services.worker.metrics import _ForgetDeadProcesses


def test_dead_process_gauges_are_forgotten_live_ones_kept(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(dead.stdout)
    for pid in (dead_pid, os.getpid()):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
    _ForgetDeadProcesses(tmp_path).collect()
    assert not (tmp_path / f"gauge_livesum_{dead_pid}.db").exists()
    assert (tmp_path / f"gauge_livesum_{os.getpid()}.db").exists()
