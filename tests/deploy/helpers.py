"""Helpers for the offline checks of the deployment files (containers, compose, Kubernetes, alerts, dashboards).

Every tool these tests run is installed by scripts/install_deploy_tools.sh; a missing one fails the test
with that name, never skips it.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from shared.settings import PROJECT_ROOT

ROOT = PROJECT_ROOT
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")
INSTALL = "scripts/install_deploy_tools.sh"
SERVICES = ("gateway", "worker", "janitor")


def tool(name: str) -> str:
    """Path of a command-line tool: the venv's own first (where the installer puts them), then PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run {INSTALL}", pytrace=False)
    return found


def python_module(name: str) -> ModuleType:
    """Import a tool's Python module, failing (not skipping) with the installer's name when it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        pytest.fail(f"{name} is not importable ({exc}): run {INSTALL}", pytrace=False)


def run(*args: str, cwd: Path = ROOT, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}", pytrace=False)
    return result


@cache
def rendered(path: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize deploy/k8s/<path>` as parsed documents."""
    out = run(tool("kubectl"), "kustomize", str(K8S / path)).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def find(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def load_module(path: Path, name: str) -> ModuleType:
    """Import a file that is not in a package (the dashboard generator)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
