"""`weed shell`, non-interactively: volume growth, the filer's TTL rules, and preparing a fresh SeaweedFS."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scripts.devstack.binaries import weed_path
from scripts.devstack.commands import CORS_SCRIPT, SEAWEEDFS_SCRIPTS
from scripts.devstack.credentials import S3Credentials
from scripts.devstack.security import weed_client_env

# security.toml directory of each server started here, by master address: `run_weed_shell` finds the client
# certificate of those without being told.
_weed_security_dirs: dict[str, Path] = {}
INIT_SCRIPT = SEAWEEDFS_SCRIPTS / "init.sh"


def remember_security_dir(master_address: str, security_dir: Path) -> None:
    """Let `run_weed_shell` find the client certificate of the server with this master address."""
    _weed_security_dirs[master_address] = security_dir


def run_weed_shell(
    master_address: str, commands: Sequence[str], timeout: float = 30.0, *, security_dir: Path | None = None
) -> str:
    """Run `weed shell` non-interactively: the commands go to its stdin one per line, and it exits at EOF.

    `master_address` is `host:port.grpcPort` (WeedPorts.master_address); the shell finds the filer through
    the master. `security_dir` holds the server's security.toml: the shell presents its gRPC client
    certificate (`weed_client_env`); by default, that of the server started here with this master address.
    Without one the server refuses the shell, which retries until `timeout`. weed shell exits non-zero when
    a command fails; that (or the timeout) raises RuntimeError here with its output.
    """
    security_dir = security_dir or _weed_security_dirs.get(master_address)
    env = {**os.environ, **(weed_client_env(security_dir) if security_dir else {})}
    command = [str(weed_path()), "-logtostderr", "shell", f"-master={master_address}"]
    try:
        result = subprocess.run(
            command, input="\n".join(commands) + "\n", capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"weed shell {list(commands)}: no answer in {timeout:.0f}s (refused without our client certificate?)"
        ) from exc
    if result.returncode != 0:
        raise RuntimeError(
            f"weed shell {list(commands)} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def limit_volume_growth(weed_master_address: str, count: int = 1, *, security_dir: Path | None = None) -> None:
    """Make the master create `count` volumes (instead of 7) when a bucket or TTL prefix first needs one.

    Runs `fs.configure -locationPrefix=/ -volumeGrowthCount=<count> -apply`: a filer rule for every path,
    which longer-prefix rules (such as TTL ones) inherit. Idempotent; stored in the filer, so it survives
    restarts.
    """
    run_weed_shell(
        weed_master_address,
        [f"fs.configure -locationPrefix=/ -volumeGrowthCount={count} -apply"],
        security_dir=security_dir,
    )


def read_filer_configuration(master_address: str, *, security_dir: Path | None = None) -> dict[str, Any]:
    """The filer's path-specific storage rules (`fs.configure` without arguments prints them as JSON)."""
    out = run_weed_shell(master_address, ["fs.configure"], security_dir=security_dir)
    start = out.find("{")
    if start < 0:
        raise RuntimeError(f"no JSON in `fs.configure` output:\n{out}")
    config: dict[str, Any] = json.JSONDecoder().raw_decode(out[start:])[0]
    return config


def filer_location_prefix(bucket_prefix_path: str) -> str:
    """`"bucket/some/prefix"` -> `"/buckets/bucket/some/prefix/"` (where the S3 gateway keeps that prefix)."""
    cleaned = bucket_prefix_path.strip("/")
    if "/" not in cleaned:
        raise ValueError(f"expected 'bucket/prefix', got {bucket_prefix_path!r}")
    return f"/buckets/{cleaned}/"


_TTL = re.compile(r"^([1-9][0-9]{0,2})([mhdwMy])$")


def configure_prefix_ttl(
    weed_master_address: str, bucket_prefix_path: str, ttl: str, *, security_dir: Path | None = None
) -> dict[str, Any]:
    """Give every object written under an S3 prefix a time-to-live, and check it took.

    Runs `fs.configure -locationPrefix=/buckets/<bucket>/<prefix>/ -ttl=<ttl> -apply` in `weed shell`. That
    adds (or replaces) one rule in the filer's configuration (stored in the filer itself, at
    /etc/seaweedfs/filer.conf, so it survives restarts). From then on, files created under the prefix are
    written to volumes with that TTL and their filer entries carry TtlSec: they stop being readable after
    the TTL, and whole expired volumes are reclaimed. Objects written before the rule keep no TTL.
    `ttl` is SeaweedFS's format: 1..255 followed by m(inute), h, d, w, M(onth) or y — e.g. "1m", "24h", "7d".

    Idempotent. Reads the configuration back and returns the rule; raises if it isn't there.
    """
    match = _TTL.match(ttl)
    if not match or int(match.group(1)) > 255:
        raise ValueError(f"ttl must be 1..255 followed by one of m h d w M y (e.g. '1d'), got {ttl!r}")
    location = filer_location_prefix(bucket_prefix_path)
    run_weed_shell(
        weed_master_address, [f"fs.configure -locationPrefix={location} -ttl={ttl} -apply"], security_dir=security_dir
    )
    rules: list[dict[str, Any]] = read_filer_configuration(weed_master_address, security_dir=security_dir).get(
        "locations", []
    )
    for rule in rules:
        if rule.get("locationPrefix") == location and rule.get("ttl") == ttl:
            return rule
    raise RuntimeError(f"TTL rule for {location} not found in the filer configuration after applying it")


def run_init_script(
    weed_master_address: str,
    security_dir: Path,
    *,
    sources_bucket: str,
    results_bucket: str,
    source_max_age_seconds: int,
    result_ttl_seconds: int,
    s3_endpoint: str | None = None,
    credentials: S3Credentials | None = None,
    timeout: float = 120.0,
) -> str:
    """Prepare a fresh (or restarted) SeaweedFS as docker compose and the dev overlay do (#12: one copy of each
    script): deploy/seaweedfs/init.sh (one volume per growth, the two buckets, native TTL rules a little past
    our limits), then bucket_cors.py (GET and HEAD from the page's origin only, #25). Idempotent.
    `security_dir` holds the server's security.toml; init.sh presents its gRPC client certificate.
    bucket_cors.py reads PORTRAITS_S3_* from the environment (the local run's) unless `s3_endpoint` and
    `credentials` are given. Returns both scripts' output."""
    env = {
        **os.environ,
        "WEED_BINARY": str(weed_path()),
        "WEED_MASTER": weed_master_address,
        "WEED_GRPC_CERTS_DIR": str(Path(weed_client_env(security_dir)["WEED_GRPC_CA"]).parent),
        "PORTRAITS_SOURCES_BUCKET": sources_bucket,
        "PORTRAITS_RESULTS_BUCKET": results_bucket,
        "PORTRAITS_SOURCE_MAX_AGE_SECONDS": str(source_max_age_seconds),
        "PORTRAITS_RESULT_TTL_SECONDS": str(result_ttl_seconds),
    }
    if s3_endpoint and credentials:
        env["PORTRAITS_S3_ENDPOINT_URL"] = s3_endpoint
        env["PORTRAITS_S3_ACCESS_KEY_ID"] = credentials.access_key
        env["PORTRAITS_S3_SECRET_ACCESS_KEY"] = credentials.secret_key
    output = ""
    for script, command in ((INIT_SCRIPT, ["sh"]), (CORS_SCRIPT, [sys.executable])):
        try:
            result = subprocess.run(
                [*command, str(script)], capture_output=True, text=True, timeout=timeout, env=env, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{script.name}: no answer in {timeout:.0f}s") from exc
        if result.returncode != 0:
            raise RuntimeError(f"{script.name} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
        output += result.stdout
    return output


# #24, docs/storage.md: a volume server that is down while an object is deleted misses the deletion (the master
# no longer lists it among the volume's copies, and nothing retries), and serves the object again when it comes
# back. `volume.check.disk -syncDeleted` compares each volume's copies and applies on each the deletions the
# others have; `-slow` checks volumes whose file counts agree too (a missed deletion does not change them).
SYNC_DELETIONS = "volume.check.disk -slow -syncDeleted -apply"


def sync_replica_deletions(master_address: str, *, security_dir: Path | None = None, timeout: float = 60.0) -> str:
    """Delete, on every volume server, the objects that another copy of the same volume has deleted: what a
    server that was down during a deletion brings back (#24). Holds weed shell's cluster lock while it runs.
    deploy/seaweedfs/start.sh runs the same command every minute beside each extra volume server. Returns
    weed shell's report."""
    return run_weed_shell(master_address, ["lock", SYNC_DELETIONS, "unlock"], timeout, security_dir=security_dir)


def purge_orphan_chunks(
    master_address: str,
    temp_dir: Path,
    *,
    cutoff: str = "10m",
    security_dir: Path | None = None,
    timeout: float = 120.0,
) -> str:
    """The backstop to `sync_replica_deletions` (#24): delete from every volume server the chunks no filer
    entry refers to and older than `cutoff` (younger ones may be uploads whose entry is not committed yet),
    including those only one copy holds (`-forcePurging`). weed's `volume.fsck`, "expert only": it assumes one
    filer (true here) and reads every volume's index; `temp_dir` holds its index copies. Not run on its own."""
    command = f"volume.fsck -reallyDeleteFromVolume -forcePurging -cutoffTimeAgo={cutoff} -tempPath={temp_dir}"
    return run_weed_shell(master_address, ["lock", command, "unlock"], timeout, security_dir=security_dir)
