"""SeaweedFS's security.toml (JWT signing keys, gRPC mutual TLS) and the client side of it (issue 9)."""

from __future__ import annotations

import importlib.util
import os
import secrets
from pathlib import Path
from typing import Any

WEED_SECURITY_FILE = "security.toml"
WEED_GRPC_DIR = "grpc"  # next to security.toml: server/ (the servers' certificate) and client/ (weed shell's)
# Each key signs one kind of token, so a token minted for one use (say, a write) is refused for another.
_WEED_JWT_SECTIONS = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
# The gRPC servers of `weed server`; [grpc.client] is what its parts present when they dial each other.
_WEED_GRPC_SERVERS = ("master", "volume", "filer", "s3", "client")
_GRPC_CERTS_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "seaweedfs" / "grpc_certs.py"


def _grpc_certs() -> Any:
    # One certificate maker for `make run`, the tests, docker compose and the dev overlay: the deploy copy is
    # standalone (the images have no scripts/), so it is loaded from its path.
    spec = importlib.util.spec_from_file_location("seaweedfs_grpc_certs", _GRPC_CERTS_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_weed_security(directory: Path) -> Path:
    """Write SeaweedFS's `security.toml` into `directory` (weed reads it from its working directory) with
    fresh random JWT signing keys and a fresh gRPC CA and certificates (under `directory`/grpc), all
    owner-only.

    Issue 9: without them the volume server serves and accepts any object to anyone who knows its file id,
    and the filer's HTTP port lists and serves every bucket: SigV4, presigned-URL expiry and DELETE were
    all bypassed. With them the volume server wants a token signed with these keys, which only the master,
    filer and S3 gateway inside the same `weed server` can sign (the master's and filer's own HTTP APIs,
    which would hand such tokens out, are switched off in `weed_command`). The keys also gate the filer's
    IAM gRPC service. Nothing outside the process needs them: rotating them costs nothing but in-flight
    tokens (10 s), so a fresh set per start is fine.

    gRPC (the [grpc.*] sections): every gRPC port (master, volume, filer, S3) does mutual TLS with a CA of
    our own; a client without a certificate it signed (plaintext, or TLS without one) is refused at the
    handshake, so `weed shell` (fs.meta.cat: file ids), `weed backup` (whole volumes) and the like are ours
    only: `run_weed_shell` presents the client certificate (`weed_client_env`). The paths are relative:
    weed runs in `directory`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _grpc_certs().write(directory / WEED_GRPC_DIR)
    server = f"{WEED_GRPC_DIR}/server"
    text = "".join(f'[{section}]\nkey = "{secrets.token_urlsafe(32)}"\n' for section in _WEED_JWT_SECTIONS)
    text += f'[grpc]\nca = "{server}/ca.crt"\n'
    text += "".join(
        f'[grpc.{part}]\ncert = "{server}/server.crt"\nkey = "{server}/server.key"\n' for part in _WEED_GRPC_SERVERS
    )
    path = directory / WEED_SECURITY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # owner-only from the start: secrets
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def ensure_weed_security(directory: Path) -> Path:
    """`directory`, holding a `security.toml` with gRPC mutual TLS and its certificates: kept when they are
    all there (so `make run` keeps them across restarts), else all written afresh by `write_weed_security`."""
    directory = Path(directory)
    path = directory / WEED_SECURITY_FILE
    if not (path.exists() and "[grpc]" in path.read_text() and _grpc_certs().complete(directory / WEED_GRPC_DIR)):
        write_weed_security(directory)
    return directory


def weed_client_env(security_dir: Path) -> dict[str, str]:
    """The environment that makes a weed client (`weed shell`, `weed backup`, ...) present the client
    certificate of the server whose security.toml is in `security_dir` (weed reads `grpc.client.cert` from
    WEED_GRPC_CLIENT_CERT, and so on). Only the certificate: not the JWT keys, which stay the server's."""
    client = Path(security_dir).resolve() / WEED_GRPC_DIR / "client"
    return {
        "WEED_GRPC_CA": str(client / "ca.crt"),
        "WEED_GRPC_CLIENT_CERT": str(client / "client.crt"),
        "WEED_GRPC_CLIENT_KEY": str(client / "client.key"),
    }
