"""Which volume servers still hold an object's bytes (#24: storage redundancy, and erasure on every copy).

    fids = chunk_file_ids(server, "portrait-results", "results/abc.jpg")  # before the S3 entry goes
    copies(server, fids)   # -> the URLs of the volume servers that serve those bytes now

The file ids come from the filer over gRPC (`weed shell fs.meta.cat`, our client certificate); once the
object is deleted through S3 its entry is gone, so record them first. Each volume server is then asked for
each chunk with a read token signed by our own JWT key (security.toml, issue 9): the strongest reader there
is, so "no copy" means no copy, not "refused". A server that is down holds nothing readable *now*; restart it
and ask again (docs/storage.md: what a restarted server brings back).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from scripts.devstack.ports import WeedPorts
from scripts.devstack.security import WEED_SECURITY_FILE
from scripts.devstack.weed_shell import run_weed_shell

TIMEOUT = 3.0
_FID = re.compile(r'"fileId":\s*"([0-9]+,[0-9a-f]+)"')
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Seaweed(Protocol):
    """What these helpers need of a `SeaweedServer` (a Protocol: no import cycle with servers.py)."""

    @property
    def ports(self) -> WeedPorts: ...
    @property
    def data_dir(self) -> Path: ...
    @property
    def volume_urls(self) -> list[str]: ...


def chunk_file_ids(server: Seaweed, bucket: str, key: str) -> tuple[str, ...]:
    """The volume file ids of every chunk of `bucket/key` (empty when the filer has no such entry)."""
    try:
        out = run_weed_shell(
            server.ports.master_address,
            [f"fs.meta.cat /buckets/{bucket}/{key}"],
            timeout=15,
            security_dir=server.data_dir,
        )
    except RuntimeError:
        return ()
    return tuple(dict.fromkeys(_FID.findall(out)))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def read_token(security_dir: Path, fid: str, ttl: float = 60.0) -> str:
    """A JWT the volume servers accept for reading `fid`: HS256 with security.toml's [jwt.signing.read] key
    and weed's claims (`fid`, `exp`), as the filer and S3 gateway sign them."""
    keys = tomllib.loads((Path(security_dir) / WEED_SECURITY_FILE).read_text())
    secret = keys["jwt"]["signing"]["read"]["key"].encode()
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"fid": fid, "exp": int(time.time() + ttl)}).encode())
    signature = _b64(hmac.new(secret, f"{header}.{claims}".encode(), hashlib.sha256).digest())
    return f"{header}.{claims}.{signature}"


def _local_volume_ids(volume_url: str) -> set[int] | None:
    # A volume server proxies a read for a volume it does not have to one that does (weed's default
    # -readMode=proxy): only a server that has the volume itself holds a copy. Its /status lists them.
    try:
        with _NO_PROXY.open(f"{volume_url}/status", timeout=TIMEOUT) as response:
            status = json.load(response)
    except (OSError, ValueError):
        return None  # down (or not a volume server): it holds nothing readable now
    volumes = status.get("Volumes") or []
    for disk in status.get("DiskStatuses") or []:
        volumes += disk.get("Volumes") or []
    return {int(volume["Id"]) for volume in volumes if "Id" in volume}


def readable(volume_url: str, fid: str, security_dir: Path) -> bool:
    """Whether this volume server itself serves the chunk's bytes to a valid read token."""
    local = _local_volume_ids(volume_url)
    if local is None or int(fid.split(",")[0]) not in local:
        return False
    request = urllib.request.Request(
        f"{volume_url}/{fid}", headers={"Authorization": f"BEARER {read_token(security_dir, fid)}"}
    )
    try:
        with _NO_PROXY.open(request, timeout=TIMEOUT) as response:
            return bool(response.status == 200 and response.read())
    except (urllib.error.HTTPError, OSError):
        return False


def copies(server: Seaweed, fids: Sequence[str]) -> tuple[str, ...]:
    """The URLs (of `server.volume_urls`) of the volume servers that serve the bytes of any of the chunks
    `fids` (`chunk_file_ids`, recorded before a deletion), read with our own token."""
    return tuple(url for url in server.volume_urls if any(readable(url, fid, server.data_dir) for fid in fids))
