"""docker-compose.yml for real (#22): Redis, SeaweedFS (with its certificate and bucket jobs), the gateway, the
CPU worker and the janitor, with the two server images swapped for stand-ins (deploy/compose/standins), and
the same portrait through it as through the locked-down containers."""

from __future__ import annotations

import base64
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.containers.engine import Engine
from shared.settings import PROJECT_ROOT as ROOT
from shared.settings import Settings
from tests.containers import harness
from tests.deploy.helpers import tool

PROJECT = "portraits-containers-test"
FILES = ("docker-compose.yml", "deploy/compose/standins/compose.yml")
SERVICES = ("redis", "seaweedfs-certs", "seaweedfs", "s3-init", "gateway", "worker-cpu", "janitor")
APP = ("gateway", "worker-cpu", "janitor")


def compose(engine: Engine, env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [tool("docker-compose"), "--project-name", PROJECT, "--env-file", str(env_file)]
    for file in FILES:
        command += ["--file", file]
    done = subprocess.run(
        [*command, *args], cwd=ROOT, env=engine.env(), capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"docker compose {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def stack(engine: Engine, tmp_path_factory) -> Iterator[tuple[Settings, dict[str, str]]]:
    credentials = {
        "COMPOSE_PROFILES": "cpu",
        "PORTRAITS_S3_ACCESS_KEY_ID": secrets.token_hex(10),
        "PORTRAITS_S3_SECRET_ACCESS_KEY": secrets.token_hex(20),
        "PORTRAITS_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "SEAWEEDFS_JWT_KEY": secrets.token_hex(16),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(16),
    }
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in credentials.items()))
    compose(engine, env_file, "down", "--volumes", "--remove-orphans", "--timeout", "5")
    try:
        compose(engine, env_file, "up", "--detach", "--no-build", *SERVICES)
        containers = {service: compose(engine, env_file, "ps", "--quiet", service).stdout.strip() for service in APP}
        assert all(containers.values()), containers
        harness.wait_healthy(engine, list(containers.values()))
        redis_port = compose(engine, env_file, "port", "redis", "6379").stdout.strip().rpartition(":")[2]
        settings = Settings(
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
            s3_endpoint_url="http://127.0.0.1:8333",
            s3_access_key_id=credentials["PORTRAITS_S3_ACCESS_KEY_ID"],
            s3_secret_access_key=credentials["PORTRAITS_S3_SECRET_ACCESS_KEY"],
            log_json=False,
        )  # type: ignore[call-arg]
        yield settings, containers
    finally:
        compose(engine, env_file, "down", "--volumes", "--remove-orphans", "--timeout", "5")


def test_grace_hopper_is_painted_through_compose(stack):
    settings, _ = stack
    accepted, job, portrait = harness.paint_grace_hopper("http://127.0.0.1:8080", "compose")
    assert job["family"] in ("oil", "watercolor", "ink") and job["reason"]
    harness.assert_portrait(portrait, settings.output_size)
    harness.assert_source_erased_and_audited(settings, accepted["id"])
