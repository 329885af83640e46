"""The gateway and janitor images carry no torch: importing them must not pull it in."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["services.gateway.app", "services.janitor.main", "services.cli"])
def test_no_torch(module):
    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0, f"{module} imports torch"
