"""A Docker engine of our own: Debian's `docker.io` daemon started by hand (no systemd: CI machines and most
sandboxes run none) with its own data root, run directory and socket, and stopped by its PID, so `make images`
leaves no daemon behind and never touches a Docker the machine may already run.

The client is Debian's `/usr/bin/docker` with BuildKit on: another `docker` client on the PATH may lack
buildx and fall back to the legacy builder, which rejects the Dockerfiles' `RUN --mount`. Image layers stay in
`var/containers/docker` between local runs (a rebuild is then seconds); CI starts from nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DOCKER = Path("/usr/bin/docker")
DOCKERD = Path("/usr/sbin/dockerd")
#: Debian packages `make images` needs: the engine, and mmdebstrap for the stand-in base (base.py).
PACKAGES = {"docker.io": DOCKERD, "mmdebstrap": Path("/usr/bin/mmdebstrap")}
#: Names a Docker engine started elsewhere (`PORTRAITS_DOCKER_HOST=unix:///run/docker.sock make images`).
EXTERNAL_ENGINE_ENV = "PORTRAITS_DOCKER_HOST"


class EngineError(RuntimeError):
    pass


@dataclass(frozen=True)
class Engine:
    """A running engine's address, and the client to reach it."""

    host: str  # DOCKER_HOST, e.g. unix:///tmp/portraits-docker-x/docker.sock

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "1"}

    def docker(self, *args: str, capture: bool = False, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(DOCKER), *args], env=self.env(), text=True, capture_output=capture, check=check, timeout=3600
        )

    def image_exists(self, name: str) -> bool:
        return self.docker("image", "inspect", name, capture=True, check=False).returncode == 0

    def image_size(self, name: str) -> int:
        """Bytes on disk, uncompressed: what `docker images` shows."""
        return int(self.docker("image", "inspect", "--format", "{{.Size}}", name, capture=True).stdout)


def ensure_packages(packages: Sequence[str] = tuple(PACKAGES)) -> None:
    """Install the Debian packages that are missing (as root, with no service started, as
    scripts/install_deploy_tools.sh does)."""
    missing = [name for name in packages if not PACKAGES[name].exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise EngineError(f"missing {' '.join(missing)}: run as root, or: sudo apt-get install {' '.join(missing)}")
    policy = Path("/usr/sbin/policy-rc.d")  # docker.io's postinst would start its service: keep it from doing so
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    try:
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
            subprocess.run(install, env=env, check=True)
    finally:
        if made_policy:
            policy.unlink()


@contextmanager
def private_engine(data_root: Path, *, start_timeout: float = 60.0) -> Iterator[Engine]:
    """dockerd on a socket of its own for the duration of the block, then SIGTERM (SIGKILL after 30 s)."""
    external = os.environ.get(EXTERNAL_ENGINE_ENV)
    if external:
        yield Engine(external)
        return
    ensure_packages(["docker.io"])
    # The run directory holds the socket and containerd's: a short path (a unix socket's is limited to 107 bytes).
    run_dir = Path(tempfile.mkdtemp(prefix="portraits-docker-"))
    data_root.mkdir(parents=True, exist_ok=True)
    engine = Engine(f"unix://{run_dir}/docker.sock")
    log_path = data_root.parent / "dockerd.log"
    command = [
        str(DOCKERD),
        f"--data-root={data_root.resolve()}",
        f"--exec-root={run_dir}/exec",
        f"--pidfile={run_dir}/docker.pid",
        f"--host={engine.host}",
        "--log-level=warn",
    ]
    with log_path.open("ab") as log:
        daemon = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + start_timeout
        while engine.docker("version", capture=True, check=False).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise EngineError(f"dockerd did not start: see {log_path}")
            time.sleep(0.2)
        yield engine
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        _unmount_under(run_dir)  # dockerd leaves the default network namespace mounted (exec/netns/default)
        shutil.rmtree(run_dir, ignore_errors=True)


def _unmount_under(directory: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{directory}/")), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount], check=False, capture_output=True)
