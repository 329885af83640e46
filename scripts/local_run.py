"""`make run`: the whole system on this machine, on loopback, under supervisord (issue 9).

    python -m scripts.local_run prepare       # var/local: generated S3 credentials, identities, env file and
                                              # the supervisord configuration
    python -m scripts.local_run supervise     # supervisord in the foreground: starts everything, restarts what
                                              # crashes (logged), Ctrl-C stops all
    python -m scripts.local_run <process>     # what each supervised program runs (redis, s3, gateway, worker…)

Services wait for what they need (as init containers would in Kubernetes), so everything starts at once. A
process that dies is restarted and the rest keep serving: honcho, used before, stopped the whole stack when
any one process exited (issue 9). Everything lives under the ignored var/ folder.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from scripts import devstack
from scripts.devstack import S3Credentials, VolumePorts, WeedPorts
from shared.settings import PROJECT_ROOT, Settings
from shared.storage import ObjectStore, StorageUnavailable

VAR = PROJECT_ROOT / "var" / "local"
CREDENTIALS_FILE = VAR / "s3-credentials.json"
IDENTITIES_FILE = VAR / "s3-identities.json"
ENV_FILE = VAR / "env"
WEBHOOK_SECRET_FILE = VAR / "webhook-secret"
SUPERVISOR_DIR = VAR / "supervisor"
SUPERVISOR_CONF = SUPERVISOR_DIR / "supervisord.conf"
SUPERVISOR_SOCKET = SUPERVISOR_DIR / "supervisor.sock"
GATEWAY_ADDRESS = "127.0.0.1:8080"
REDIS_PORT = 6380  # not 6379: leave a developer's own Redis alone
WEED_PORTS = WeedPorts(
    master=9333, master_grpc=19333, volume=8081, volume_grpc=18081, filer=8888, filer_grpc=18888, s3=8333, s3_grpc=18333
)
# #24: a second volume server (the s3-volume program) and replication 001, so every source and portrait is stored
# twice and losing one volume server loses none (docs/storage.md). Objects written before this keep one copy.
WEED_VOLUME_PORTS = VolumePorts(http=8082, grpc=18082)
WEED_REPLICATION = "001"


def credentials() -> S3Credentials:
    """Generated once per checkout and kept (mode 0600) so restarts keep access to the stored objects."""
    if CREDENTIALS_FILE.exists():
        return S3Credentials(**json.loads(CREDENTIALS_FILE.read_text()))
    creds = devstack.generate_credentials()
    CREDENTIALS_FILE.touch(mode=0o600)
    CREDENTIALS_FILE.write_text(json.dumps(asdict(creds)))
    return creds


def webhook_secret() -> str:
    """The local run's webhook signing secret (#10): generated once, kept 0600 like the S3 credentials, so a
    receiver set up against it keeps verifying across restarts."""
    if WEBHOOK_SECRET_FILE.exists():
        return WEBHOOK_SECRET_FILE.read_text().strip()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    WEBHOOK_SECRET_FILE.touch(mode=0o600)
    WEBHOOK_SECRET_FILE.write_text(secret + "\n")
    return secret


def prepare() -> None:
    for folder in (
        "redis",
        "seaweedfs",
        "seaweedfs-volume-2",
        "prometheus",
        "metrics/gateway",
        "metrics/worker",
        "supervisor",
    ):
        (VAR / folder).mkdir(parents=True, exist_ok=True)
    for stale in (VAR / "metrics").glob("*/*.db"):  # multiprocess metrics files from a previous run
        stale.unlink()
    creds = credentials()
    devstack.write_s3_identities(IDENTITIES_FILE, creds)
    env = {
        "PORTRAITS_REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
        "PORTRAITS_S3_ENDPOINT_URL": WEED_PORTS.s3_endpoint,
        "PORTRAITS_S3_ACCESS_KEY_ID": creds.access_key,
        "PORTRAITS_S3_SECRET_ACCESS_KEY": creds.secret_key,
        "PORTRAITS_WEBHOOK_SECRET": webhook_secret(),
        "PORTRAITS_LOG_JSON": "false",
        "PYTHONUNBUFFERED": "1",
    }
    ENV_FILE.touch(mode=0o600)
    ENV_FILE.write_text("".join(f"{name}={value}\n" for name, value in env.items()))
    SUPERVISOR_CONF.write_text(supervisor_config(PROGRAMS))


# Programs in start order; each waits for its dependencies itself. SeaweedFS ignores SIGTERM in single-master
# mode (see devstack.weed_command), so it is sent SIGKILL straight away.
PROGRAMS = ("redis", "s3", "s3-volume", "gateway", "worker", "janitor", "prometheus")
_STOP_SIGNALS = {"s3": "KILL", "s3-volume": "KILL", "worker": "TERM"}  # s3-volume: like s3, SIGKILL is its stop (#24)
_STOP_WAIT_SECONDS = {"worker": 20, "gateway": 35}  # a warm shutdown finishes the render in hand


def supervisor_config(programs: tuple[str, ...]) -> str:
    """supervisord's configuration for the local run: every program restarted whenever it exits, output and
    supervisord's own restart lines on our stdout, control socket owner-only under var/local."""
    sections = [
        "[supervisord]",
        "nodaemon=true",
        # In the foreground supervisord also prints its own log ("exited … spawned …": how a crash shows) on
        # stdout; a log file on top would repeat every line.
        "logfile=/dev/null",
        "logfile_maxbytes=0",
        f"pidfile={SUPERVISOR_DIR / 'supervisord.pid'}",
        f"childlogdir={SUPERVISOR_DIR}",
        "",
        "[unix_http_server]",
        f"file={SUPERVISOR_SOCKET}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{SUPERVISOR_SOCKET}",
    ]
    for priority, name in enumerate(programs, start=1):
        sections += [
            "",
            f"[program:{name}]",
            f"command={sys.executable} -m scripts.local_run {name}",
            f"directory={PROJECT_ROOT}",
            f"priority={priority}",
            "autorestart=true",
            "startsecs=1",
            "startretries=1000",  # a dependency down for minutes must not leave a program FATAL for good
            f"stopsignal={_STOP_SIGNALS.get(name, 'TERM')}",
            f"stopwaitsecs={_STOP_WAIT_SECONDS.get(name, 10)}",
            "stopasgroup=true",  # the worker's render processes and gunicorn's workers stop with their parent
            "killasgroup=true",
            "redirect_stderr=true",
            "stdout_logfile=/dev/fd/1",
            "stdout_logfile_maxbytes=0",
        ]
    return "\n".join(sections) + "\n"


def supervise() -> None:
    """supervisord in the foreground with the prepared configuration (Ctrl-C stops every program)."""
    os.execvp(sys.executable, [sys.executable, "-m", "supervisor.supervisord", "-c", str(SUPERVISOR_CONF)])


def load_env_file() -> None:
    """The prepared environment (S3 credentials, URLs), read by each program itself: supervisord's
    configuration then holds no secret."""
    for line in ENV_FILE.read_text().splitlines():
        name, _, value = line.partition("=")
        if name:
            os.environ.setdefault(name, value)


def wait_for_backends(settings: Settings, *, prepare: bool) -> None:
    """Wait for Redis and S3. The gateway (`prepare`) also creates the buckets and native TTL rules; the
    other services wait until the buckets exist."""
    devstack.wait_for_redis(settings.redis_url, timeout=30)
    creds = S3Credentials(settings.s3_access_key_id, settings.s3_secret_access_key.get_secret_value())
    devstack.wait_for_s3(settings.s3_endpoint_url, creds, timeout=60)
    if prepare:
        output = devstack.run_init_script(
            WEED_PORTS.master_address,
            VAR / "seaweedfs",  # init.sh presents this server's gRPC client certificate (issue 9)
            sources_bucket=settings.sources_bucket,
            results_bucket=settings.results_bucket,
            source_max_age_seconds=settings.source_max_age_seconds,
            result_ttl_seconds=settings.result_ttl_seconds,
        )
        print(output.strip().splitlines()[-1] if output.strip() else "seaweedfs ready", flush=True)
    else:
        storage = ObjectStore(settings)
        deadline = time.monotonic() + 90
        while True:
            try:
                storage.ping()
                return
            except StorageUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def wait_for_weed_security(directory: Path, timeout: float = 60.0) -> Path:
    """`directory` once the s3 program has written its security.toml there (the certificates come first)."""
    deadline = time.monotonic() + timeout
    while not (directory / devstack.WEED_SECURITY_FILE).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no {devstack.WEED_SECURITY_FILE} in {directory}: is the s3 program running?")
        time.sleep(0.5)
    return directory


def banner() -> str:
    url = f"http://{GATEWAY_ADDRESS}"
    return (
        f"\n  AI Portraits is running at {url}\n\n"
        f"  curl -F image=@selfie.jpg {url}/v1/portraits\n"
        f"  curl {url}/v1/portraits/<id>          # poll until status is done, then fetch result_url\n"
        f"  .venv/bin/portraits submit selfie.jpg --wait -o portrait.jpg\n"
        f"  .venv/bin/portraits janitor report      # deletion audit: counts, lifetimes, overdue\n"
        f"  http://127.0.0.1:9090                   # Prometheus with the alert rules (when installed)\n\n"
        f"  Ctrl-C stops everything. Data lives under var/.\n"
    )


def prometheus_command() -> list[str]:
    """Prometheus (Debian's package, when installed) scraping every local service with the project's rules."""
    binary = shutil.which("prometheus")
    if binary is None:  # stay up and say why, rather than be restarted in a loop
        print("prometheus is not installed (apt-get install prometheus): local metrics are not collected", flush=True)
        return ["sleep", "infinity"]
    return [
        binary,
        f"--config.file={PROJECT_ROOT / 'deploy/prometheus/local.yml'}",
        f"--storage.tsdb.path={VAR / 'prometheus'}",
        "--storage.tsdb.retention.time=2d",
        "--web.listen-address=127.0.0.1:9090",
    ]


def exec_process(name: str) -> None:
    load_env_file()
    settings = Settings()
    commands: dict[str, Callable[[], list[str]]] = {
        "redis": lambda: devstack.redis_command(REDIS_PORT, VAR / "redis", persist=True),
        "s3": lambda: devstack.weed_command(
            WEED_PORTS, VAR / "seaweedfs", IDENTITIES_FILE, replication=WEED_REPLICATION
        ),
        # #24: the second copy; it retries until the master answers. Its cwd is s3's (same security.toml).
        "s3-volume": lambda: devstack.weed_volume_command(
            WEED_VOLUME_PORTS, WEED_PORTS.master_address, VAR / "seaweedfs-volume-2"
        ),
        "gateway": lambda: [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "services/gateway/gunicorn_conf.py",
            "services.gateway.wsgi:app",
        ],
        "janitor": lambda: [sys.executable, "-m", "services.janitor"],
        "prometheus": prometheus_command,
        "worker": lambda: [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "services.worker.app",
            "worker",
            "-Q",
            settings.queue_name,
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ],
    }
    if name in ("gateway", "worker"):  # several processes each: their metrics are shared through files
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(VAR / "metrics" / name)
    if name in ("gateway", "worker", "janitor"):
        wait_for_backends(settings, prepare=name == "gateway")
    if name == "gateway":
        os.environ.setdefault("PORTRAITS_GATEWAY_BIND", GATEWAY_ADDRESS)
        print(banner(), flush=True)
    if name == "s3":  # weed reads security.toml from its cwd: JWT keys, gRPC certificates, 0600 (issue 9)
        os.chdir(devstack.ensure_weed_security(VAR / "seaweedfs"))
    if name == "s3-volume":  # s3's security.toml (#24): waited for, never written here, or the two could race
        os.chdir(wait_for_weed_security(VAR / "seaweedfs"))
    command = commands[name]()
    os.execvp(command[0], command)


def main(argv: list[str]) -> None:
    if argv == ["prepare"]:
        prepare()
    elif argv == ["supervise"]:
        supervise()
    elif len(argv) == 1:
        exec_process(argv[0])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
