"""Loopback and free ports: every server started from here listens on 127.0.0.1 only, on ports picked by
the OS, so parallel sessions never collide (#12: split out of scripts/devstack.py)."""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on loopback.

    All sockets stay open until every port is picked, so the OS cannot hand out the same port twice. The
    ports are free *now*; another process could still grab one before our server binds it (callers that
    care retry with fresh ports, as `start_seaweedfs` does).
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(sock.getsockname()[1])
        return ports


def free_port() -> int:
    """One free TCP port on loopback."""
    return free_ports(1)[0]


@dataclass(frozen=True)
class WeedPorts:
    """Every port `weed server` listens on. gRPC ports are explicit: the default (HTTP port + 10000) would
    be unchecked and can overflow 65535 for high ephemeral ports."""

    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3: int
    s3_grpc: int

    @classmethod
    def allocate(cls) -> WeedPorts:
        return cls(*free_ports(8))

    @property
    def master_address(self) -> str:
        """SeaweedFS's `host:httpPort.grpcPort` form, which `weed shell -master=` needs for a non-default
        gRPC port."""
        return f"{LOOPBACK}:{self.master}.{self.master_grpc}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.s3}"

    @property
    def filer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.filer}"

    @property
    def grpc_unix_sockets(self) -> list[Path]:
        """Unix sockets weed 4.x creates next to each gRPC port, always under /tmp (the path is hard-coded:
        no flag, no TMPDIR). They are served by the same gRPC servers, so with security.toml they want the
        client certificate too (mutual TLS), and mode 0755 keeps other users from connecting at all.
        SIGKILL leaves them behind; `SeaweedServer.kill` removes them."""
        kinds = {"master": self.master_grpc, "volume": self.volume_grpc, "filer": self.filer_grpc, "s3": self.s3_grpc}
        return [Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock") for kind, port in kinds.items()]


@dataclass(frozen=True)
class VolumePorts:
    """The ports of one more volume server (`weed volume`, #24): HTTP (objects, with a JWT) and gRPC."""

    http: int
    grpc: int

    @classmethod
    def allocate(cls) -> VolumePorts:
        return cls(*free_ports(2))

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.http}"

    @property
    def grpc_unix_socket(self) -> Path:
        """The /tmp unix socket weed 4.x adds next to the gRPC port (see `WeedPorts.grpc_unix_sockets`)."""
        return Path(f"/tmp/seaweedfs-volume-grpc-{self.grpc}.sock")
