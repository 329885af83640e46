"""Try to reach a stored object through SeaweedFS without S3 signing (issue 9, "storage back door").

The S3 gateway checks SigV4 and presigned-URL expiry, but `weed server` also answers HTTP on its master,
volume and filer ports. Unprotected, the filer lists and serves every bucket, the master hands out volume
locations (and, given JWT keys, tokens), and the volume server serves any object by file id. This module
tries each of those paths against a running server and says whether it was refused:

    from scripts.storage_backdoor import unsigned_reads
    for attempt in unsigned_reads(server.ports, "portrait-results", "results/abc.jpg"):
        print(attempt.row())

The object's file id (which the volume paths need) is looked up the way an intruder on the network would:
with `weed shell` over the filer's gRPC port, which stays open (see `grpc_plaintext`).
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass

from scripts.devstack import LOOPBACK, WeedPorts, run_weed_shell

TIMEOUT = 3.0


@dataclass(frozen=True)
class Attempt:
    """One unsigned request. `status` is the HTTP status, or None when the connection itself failed (then
    `error` says how); `refused` is True when nothing usable came back (an error status or no answer)."""

    port: str  # which listener: filer, master, volume, or <part>-grpc
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
        return f"{self.port:<12} {self.what:<34} {self.status or self.error:<24} {outcome}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect to the volume server is itself a way in: report the 3xx instead of following it.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def _request(port: str, what: str, url: str, *, method: str = "GET", data: bytes | None = None,
             token: str = "") -> Attempt:
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


def file_id(ports: WeedPorts, bucket: str, key: str) -> str | None:
    """The volume file id of the object's first chunk, read from the filer over gRPC (`weed shell`)."""
    try:
        out = run_weed_shell(ports.master_address, [f"fs.meta.cat /buckets/{bucket}/{key}"])
    except (RuntimeError, OSError):
        return None
    match = re.search(r'"fileId":\s*"([0-9]+,[0-9a-f]+)"', out)
    return match.group(1) if match else None


def unsigned_reads(ports: WeedPorts, bucket: str, key: str) -> list[Attempt]:
    """Every unsigned way to the object `bucket/key` (and one unsigned write) over HTTP, all of which must
    be refused. `ports` are the running `weed server`'s (e.g. `SeaweedServer.ports`)."""
    filer = f"http://{LOOPBACK}:{ports.filer}"
    master = f"http://{LOOPBACK}:{ports.master}"
    volume = f"http://{LOOPBACK}:{ports.volume}"
    attempts = [
        _request("filer", "GET object", f"{filer}/buckets/{bucket}/{key}"),
        _request("filer", "list bucket", f"{filer}/buckets/{bucket}/?pretty=y"),
    ]
    fid = file_id(ports, bucket, key) or "1,0000000000000000"  # unknown: any id shows whether it's open
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
    return attempts


_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")  # + empty SETTINGS


def _grpc_plaintext(port: str, number: int) -> Attempt:
    # A plaintext gRPC (HTTP/2) server answers the client preface with its own SETTINGS frame (type 4); a
    # TLS-only one answers with a TLS alert or closes.
    url = f"grpc://{LOOPBACK}:{number}"
    try:
        with socket.create_connection((LOOPBACK, number), timeout=TIMEOUT) as sock:
            sock.sendall(_H2_PREFACE)
            head = sock.recv(9)
    except OSError as exc:
        return Attempt(port, "plaintext HTTP/2", url, None, error=type(exc).__name__)
    served = len(head) == 9 and head[3] == 4
    return Attempt(port, "plaintext HTTP/2", url, 200 if served else None, error="" if served else "not HTTP/2")


def grpc_plaintext(ports: WeedPorts) -> list[Attempt]:
    """Whether each gRPC port serves unauthenticated clients. It does (issue 9: no mTLS yet): the filer's
    gives object metadata (file ids), the volume server's copies whole volumes (`weed backup`), so these
    are a known way around S3 for whoever reaches them."""
    return [_grpc_plaintext(f"{name}-grpc", number) for name, number in
            (("master", ports.master_grpc), ("volume", ports.volume_grpc), ("filer", ports.filer_grpc))]


def summary(attempts: list[Attempt]) -> str:
    """One line for a report: how many unsigned paths were refused, and which were not."""
    open_paths = [f"{a.port} {a.what}" for a in attempts if not a.refused]
    return json.dumps({"refused": len(attempts) - len(open_paths), "open": open_paths})
