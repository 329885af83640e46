"""What both container tests do: wait for healthchecks, send Grace Hopper through the HTTP API, and check that
her photo was erased, verified and audited."""

from __future__ import annotations

import io
import json
import time

import requests
from PIL import Image

from scripts.containers.engine import Engine
from scripts.support import samples
from shared.audit import ObjectKind
from shared.settings import PROJECT_ROOT as ROOT
from shared.settings import Settings
from shared.storage import source_key
from tests.support.service import Backends

OUTPUT = ROOT / "var" / "containers"


def health(engine: Engine, container: str) -> str:
    state = json.loads(engine.docker("inspect", "--format", "{{json .State}}", container, capture=True).stdout)
    if not state.get("Running"):
        raise AssertionError(f"{container} stopped ({state.get('ExitCode')}):\n{logs(engine, container)}")
    return str(state.get("Health", {}).get("Status", "none"))


def logs(engine: Engine, container: str, lines: int = 60) -> str:
    done = engine.docker("logs", "--tail", str(lines), container, capture=True, check=False)
    return done.stdout + done.stderr


def wait_healthy(engine: Engine, containers: list[str], timeout: float = 180.0) -> None:
    """Every container's own HEALTHCHECK (the Dockerfile's command) reports healthy."""
    deadline = time.monotonic() + timeout
    waiting = list(containers)
    while waiting:
        waiting = [c for c in waiting if health(engine, c) != "healthy"]
        if waiting and time.monotonic() > deadline:
            raise AssertionError(f"not healthy after {timeout:.0f}s: {waiting}\n" + logs(engine, waiting[0]))
        time.sleep(1.0)


def paint_grace_hopper(gateway: str, name: str, timeout: float = 240.0) -> tuple[dict, dict, bytes]:
    """Upload → poll → download, over HTTP only. Returns (the 202's document, the done job, the portrait); the
    portrait is also kept as var/containers/<name>.jpg, to be looked at (ignored, never committed)."""
    photo = samples.grace_hopper_path()
    with photo.open("rb") as file:
        response = requests.post(f"{gateway}/v1/portraits", files={"image": ("selfie.png", file)}, timeout=30)
    assert response.status_code == 202, response.text
    accepted = response.json()
    deadline = time.monotonic() + timeout
    while True:
        job = requests.get(f"{gateway}{accepted['status_url']}", timeout=10).json()
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert job["status"] == "done", job
    portrait = requests.get(job["result_url"], timeout=30)
    assert portrait.status_code == 200, portrait.text
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / f"{name}.jpg").write_bytes(portrait.content)
    return accepted, job, portrait.content


def assert_portrait(data: bytes, size: int) -> None:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and max(image.size) == size and not image.getexif()


def assert_source_erased_and_audited(settings: Settings, job_id: str, timeout: float = 30.0) -> None:
    backends = Backends.connect(settings)
    deadline = time.monotonic() + timeout
    while True:
        entries = [e for e in backends.audit.entries() if e.job_id == job_id and e.kind is ObjectKind.SOURCE]
        if entries or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not backends.storage.exists(settings.sources_bucket, source_key(job_id)), "the photo outlived its portrait"
    assert entries and all(e.verified for e in entries), entries
