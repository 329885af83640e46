"""Try to reach a stored object through SeaweedFS without S3 signing (issue 9, "storage back door").

The S3 gateway checks SigV4 and presigned-URL expiry, but `weed server` also answers HTTP on its master,
volume and filer ports, and gRPC on those and the S3 gateway's. Unprotected, the filer lists and serves every
bucket, the master hands out volume locations (and, given JWT keys, tokens), the volume server serves any
object by file id, and over gRPC `weed shell` reads every file's metadata and `weed backup` copies whole
volumes. This module tries each of those paths against a running server and says whether it was refused:

    from scripts.storage_backdoor import unsigned_reads
    for attempt in unsigned_reads(server.ports, "portrait-results", "results/abc.jpg"):
        print(attempt.row())

The object's file id (which the volume paths need) is looked up with `weed shell` and our own gRPC client
certificate: the HTTP paths are tried as by an intruder who knows it, the strongest case. The gRPC ports
themselves are tried without a certificate (see `grpc_plaintext`).
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from scripts.devstack import LOOPBACK, WeedPorts, run_weed_shell

TIMEOUT = 3.0


@dataclass(frozen=True)
class Attempt:
    """One unsigned request. `status` is the HTTP status, or None when the connection itself failed (then
    `error` says how); `refused` is True when nothing usable came back (an error status or no answer)."""

    port: str  # which listener: filer, master, volume, <part>-grpc, or <part>-grpc.sock (weed's unix socket)
    what: str
    url: str
    status: int | None
    error: str = ""
    token: str = ""  # a JWT the response handed out (master /dir/lookup), for the next attempt to use

    @property
    def refused(self) -> bool:
        return self.status is None or self.status >= 400

    def row(self) -> str:
        outcome = "refused" if self.refused else "OPEN"
        return f"{self.port:<17} {self.what:<34} {self.status or self.error:<34} {outcome}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect to the volume server is itself a way in: report the 3xx instead of following it.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def _request(
    port: str, what: str, url: str, *, method: str = "GET", data: bytes | None = None, token: str = ""
) -> Attempt:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = token
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as response:
            return Attempt(port, what, url, response.status, token=response.headers.get("Authorization", ""))
    except urllib.error.HTTPError as exc:
        return Attempt(port, what, url, exc.code, token=exc.headers.get("Authorization", "") or "")
    except OSError as exc:  # refused, reset, timed out
        return Attempt(port, what, url, None, error=type(exc).__name__)


def file_id(ports: WeedPorts, bucket: str, key: str, *, security_dir: Path | None = None) -> str | None:
    """The volume file id of the object's first chunk, read from the filer over gRPC (`weed shell` with our
    client certificate: `security_dir` as for `run_weed_shell`). None when it cannot be read."""
    try:
        out = run_weed_shell(
            ports.master_address, [f"fs.meta.cat /buckets/{bucket}/{key}"], timeout=15, security_dir=security_dir
        )
    except (RuntimeError, OSError):
        return None
    match = re.search(r'"fileId":\s*"([0-9]+,[0-9a-f]+)"', out)
    return match.group(1) if match else None


def unsigned_reads(ports: WeedPorts, bucket: str, key: str, *, security_dir: Path | None = None) -> list[Attempt]:
    """Every unsigned way to the object `bucket/key` (and one unsigned write) over HTTP, and every gRPC port
    without a client certificate (`grpc_plaintext`), all of which must be refused. `ports` are the running
    `weed server`'s (e.g. `SeaweedServer.ports`); `security_dir` only serves to find the file id."""
    filer = f"http://{LOOPBACK}:{ports.filer}"
    master = f"http://{LOOPBACK}:{ports.master}"
    volume = f"http://{LOOPBACK}:{ports.volume}"
    attempts = [
        _request("filer", "GET object", f"{filer}/buckets/{bucket}/{key}"),
        _request("filer", "list bucket", f"{filer}/buckets/{bucket}/?pretty=y"),
    ]
    fid = (
        file_id(ports, bucket, key, security_dir=security_dir) or "1,0000000000000000"
    )  # unknown: any id shows whether it's open
    volume_id = fid.split(",")[0]
    lookup = _request("master", "lookup file id (token)", f"{master}/dir/lookup?fileId={fid}")
    attempts += [
        _request("master", "lookup volume", f"{master}/dir/lookup?volumeId={volume_id}"),
        lookup,
        _request("master", "GET object by file id", f"{master}/{fid}"),
        _request("volume", "GET object by file id", f"{volume}/{fid}"),
    ]
    if lookup.token:  # the master handed out a token: see whether the volume server takes it
        attempts.append(_request("volume", "GET object with master's token", f"{volume}/{fid}", token=lookup.token))
    assign = _request("master", "assign file id (write)", f"{master}/dir/assign")
    attempts.append(assign)
    # A write to a fresh, random file id on the same volume: harmless if it were accepted.
    new_fid = f"{volume_id},{secrets.token_hex(8)}{secrets.token_hex(4)}"
    attempts.append(_request("volume", "PUT new file id", f"{volume}/{new_fid}", method="PUT", data=b"x"))
    return attempts + grpc_plaintext(ports)


_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")  # + empty SETTINGS


def _connect(address: tuple[str, int] | str) -> socket.socket:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    return sock


def _grpc_attempt(port: str, address: tuple[str, int] | str, *, tls: bool) -> Attempt:
    # A gRPC (HTTP/2) server that serves this client answers the client preface with its own SETTINGS frame
    # (type 4): status 200, OPEN. Refused: a TLS-only server closes a plaintext connection (error "closed");
    # one doing mutual TLS ends a handshake without a client certificate with an alert (its reason, e.g.
    # TLSV13_ALERT_CERTIFICATE_REQUIRED). The TLS client trusts any server certificate (a stranger has no
    # CA) and offers ALPN h2, as gRPC clients do.
    url = f"unix://{address}" if isinstance(address, str) else f"grpc://{address[0]}:{address[1]}"
    what = "TLS gRPC, no client cert" if tls else "plaintext gRPC"
    try:
        with _connect(address) as raw:
            sock = raw
            if tls:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                context.set_alpn_protocols(["h2"])
                sock = context.wrap_socket(raw, server_hostname=LOOPBACK)
            sock.sendall(_H2_PREFACE)
            head = sock.recv(9)
    except ssl.SSLError as exc:
        return Attempt(port, what, url, None, error=exc.reason or type(exc).__name__)
    except OSError as exc:  # refused, reset, timed out, no such socket
        return Attempt(port, what, url, None, error=type(exc).__name__)
    if len(head) == 9 and head[3] == 4:
        return Attempt(port, what, url, 200)
    return Attempt(port, what, url, None, error="closed" if not head else "not HTTP/2")


def grpc_plaintext(ports: WeedPorts) -> list[Attempt]:
    """Whether the master, volume, filer and S3 gRPC ports, and the unix sockets weed also serves them on
    (/tmp/seaweedfs-<part>-grpc-<port>.sock, where weed runs on this machine), serve a client without our
    certificate: in plaintext, and over TLS without a client certificate. Each must be refused (issue 9:
    mutual TLS, see `devstack.write_weed_security`): unprotected, the filer's gives every object's metadata
    (file ids), the volume server's copies whole volumes (`weed backup`)."""
    grpc_ports = (
        ("master", ports.master_grpc),
        ("volume", ports.volume_grpc),
        ("filer", ports.filer_grpc),
        ("s3", ports.s3_grpc),
    )
    sockets = {path.name: path for path in ports.grpc_unix_sockets}
    attempts = []
    for name, number in grpc_ports:
        socket_path = sockets[f"seaweedfs-{name}-grpc-{number}.sock"]
        for tls in (False, True):
            attempts.append(_grpc_attempt(f"{name}-grpc", (LOOPBACK, number), tls=tls))
            if socket_path.exists():
                attempts.append(_grpc_attempt(f"{name}-grpc.sock", str(socket_path), tls=tls))
    return attempts


def summary(attempts: list[Attempt]) -> str:
    """One line for a report: how many unsigned paths were refused, and which were not."""
    open_paths = [f"{a.port} {a.what}" for a in attempts if not a.refused]
    return json.dumps({"refused": len(attempts) - len(open_paths), "open": open_paths})
