"""More volume servers for a `weed server` (#24: storage redundancy): with the master's replication at "001"
every object is stored twice, on two of them, so losing one volume server loses no object."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from scripts.devstack.commands import weed_volume_command
from scripts.devstack.ports import VolumePorts
from scripts.devstack.processes import ManagedProcess
from scripts.devstack.readiness import weed_volume_server_ready
from scripts.devstack.weed_shell import sync_replica_deletions

NO_REPLICATION = "000"


def copies(replication: str) -> int:
    """How many copies SeaweedFS keeps of each object under `replication` ("xyz": x more copies in other data
    centres, y in other racks, z on other servers of the same rack): "000" -> 1, "001" -> 2."""
    if len(replication) != 3 or not replication.isdigit():
        raise ValueError(f"replication is three digits (SeaweedFS's xyz, e.g. '001'), got {replication!r}")
    return 1 + sum(int(digit) for digit in replication)


def check_replication(replication: str, volume_servers: int) -> None:
    """Refuse a replication that `volume_servers` servers on one machine cannot hold: they are all in one data
    centre and rack, so only the last digit (other servers of the rack) can be met, and the master would refuse
    every new volume (so every S3 PUT) otherwise."""
    needed = copies(replication)
    if replication[:2] != "00":
        raise ValueError(f"replication {replication!r} wants other data centres or racks: every server here is in one")
    if volume_servers < needed:
        raise ValueError(f"replication {replication!r} keeps {needed} copies: it needs {needed} volume servers")


@dataclass(frozen=True)
class VolumeServer:
    """One more `weed volume` of a `SeaweedServer` (from `start_seaweedfs(..., volume_servers=2)`)."""

    ports: VolumePorts
    data_dir: Path
    process: ManagedProcess
    master_address: str

    @property
    def url(self) -> str:
        return self.ports.url

    @property
    def port(self) -> int:
        return self.ports.http

    @property
    def running(self) -> bool:
        return self.process.running

    def ready(self) -> bool:
        """It heartbeats to the master (its /healthz answers 503 until then)."""
        return weed_volume_server_ready(self.url)

    def kill(self) -> None:
        """SIGKILL (a lost server: no goodbye to the master) and remove the /tmp gRPC socket it leaves."""
        self.process.kill()
        with contextlib.suppress(FileNotFoundError):
            if self.ports.grpc_unix_socket.is_socket():
                self.ports.grpc_unix_socket.unlink()

    def start(self, timeout: float = 30.0) -> float:
        """Start it (again: same ports and data), wait until it heartbeats, then delete what it missed being
        deleted while it was away (`sync_replica_deletions`: it would serve those objects again, docs/storage.md).
        Returns the seconds waited."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process.start()
        waited = self.process.wait_ready(self.ready, timeout)
        sync_replica_deletions(self.master_address)
        return waited

    def restart(self, timeout: float = 30.0) -> float:
        self.kill()
        return self.start(timeout)


def volume_server(
    index: int,
    data_dir: Path,
    master_address: str,
    ports: VolumePorts | None = None,
    *,
    sync_deletions_seconds: int = 60,
) -> VolumeServer:
    """Volume server number `index` (2, 3, ...; 1 is the one inside `weed server`), not started: its volumes
    in data_dir/volume-<index>, its log in data_dir/volume-<index>.log. It runs in data_dir, where
    `start_seaweedfs` wrote security.toml: the same JWT keys and gRPC certificates (issue 9)."""
    ports = ports or VolumePorts.allocate()
    volumes = Path(data_dir) / f"volume-{index}"
    process = ManagedProcess(
        f"weed volume {index}",
        weed_volume_command(ports, master_address, volumes, sync_deletions_seconds=sync_deletions_seconds),
        Path(data_dir) / f"volume-{index}.log",
        cwd=Path(data_dir),
    )
    return VolumeServer(ports=ports, data_dir=volumes, process=process, master_address=master_address)
