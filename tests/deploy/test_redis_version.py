"""One Redis version everywhere (#24): what the tests run is what the local run, compose and the dev overlay run.

Debian 12's redis-server 7.0 (kept patched by Debian's security updates) for the tests and `make run`; the same
minor version's image for compose and the dev overlay; the compose stand-in is built from Debian 12 itself."""

from __future__ import annotations

import re

import redis
import yaml

from scripts.devstack.binaries import REDIS_VERSION, redis_server_path, redis_server_version
from scripts.devstack.servers import RedisServer
from tests.deploy.helpers import ROOT


def _image_minor(image: str) -> str:
    match = re.fullmatch(r"redis:(\d+\.\d+)(?:\.\d+)?(?:-[a-z0-9.]+)?", image)
    assert match, f"not a pinned redis image: {image!r}"
    return match.group(1)


def test_compose_runs_the_tests_redis() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert _image_minor(compose["services"]["redis"]["image"]) == REDIS_VERSION


def test_the_dev_overlay_runs_the_tests_redis() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy/k8s/overlays/dev/redis.yaml").read_text()) if d]
    images = [
        container["image"]
        for doc in docs
        if doc.get("kind") in ("Deployment", "StatefulSet")
        for container in doc["spec"]["template"]["spec"]["containers"]
    ]
    assert images and all(_image_minor(image) == REDIS_VERSION for image in images)


def test_the_compose_stand_in_is_debian_12s_redis() -> None:
    dockerfile = (ROOT / "deploy/compose/standins/Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in dockerfile  # Debian 12: redis-server 7.0
    assert "apt-get install -y -q --no-install-recommends redis-server" in dockerfile


def test_the_installer_and_the_devstack_agree() -> None:
    script = (ROOT / "scripts/install_redis.sh").read_text()
    assert f'REDIS_MINOR="{REDIS_VERSION}"' in script


def test_the_binary_the_tests_start_is_that_version() -> None:
    version = redis_server_version(redis_server_path())
    assert version.startswith(REDIS_VERSION + ".")


def test_the_running_server_says_so(redis_server: RedisServer) -> None:
    info = redis.Redis.from_url(redis_server.url).info("server")
    assert str(info["redis_version"]).startswith(REDIS_VERSION + ".")
