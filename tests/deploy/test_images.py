"""The Dockerfiles, checked without a Docker engine: hadolint, their structure (multi-stage, non-root, the
right torch in the right image only), and the commands they run, executed here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy.helpers import ROOT, SERVICES, python_module, run, tool

# #12: the gateway and the janitor share one Dockerfile, one final stage (--target) each; the worker has its own.
TORCHFREE = ROOT / "services" / "Dockerfile.torchfree"
DOCKERFILES = {"gateway": TORCHFREE, "janitor": TORCHFREE, "worker": ROOT / "services" / "worker" / "Dockerfile"}
TARGETS = {"gateway": "gateway", "janitor": "janitor", "worker": None}  # None: the last stage

Step = tuple[str, tuple[str, ...], tuple[str, ...]]


def instructions(service: str) -> list[Step]:
    """(instruction, flags, arguments) in order, parsed by BuildKit's own parser (the `dockerfile` package)."""
    dockerfile = python_module("dockerfile")
    return [(c.cmd.upper(), tuple(c.flags), tuple(c.value)) for c in dockerfile.parse_file(str(DOCKERFILES[service]))]


def stages(service: str) -> dict[str, list[Step]]:
    """Each stage's steps, by stage name, in file order (each list starts with its FROM)."""
    found: dict[str, list[Step]] = {}
    for step in instructions(service):
        if step[0] == "FROM":
            found[step[2][-1] if len(step[2]) == 3 else f"stage{len(found)}"] = []
        if found:
            found[list(found)[-1]].append(step)
    return found


def final_stage(service: str) -> list[Step]:
    """The steps that make the service's image: its target stage (the last one by default) and the stages it
    is built FROM, down to the base image, base first."""
    by_name = stages(service)
    name = TARGETS[service] or list(by_name)[-1]
    chain: list[Step] = []
    while name in by_name:
        chain = by_name[name] + chain
        name = by_name[name][0][2][0]  # FROM <base> AS <name>: a stage's name or an image
    return chain


def torch_pin() -> str:
    """The torch version pyproject.toml pins (in the worker's extra)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    [pin] = {r for r in requirements if re.match(r"torch\s*==", r)}
    return pin.split("==")[1].strip()


def extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_is_clean(service):
    run(tool("hadolint"), str(DOCKERFILES[service]))


@pytest.mark.parametrize("service", SERVICES)
def test_multi_stage_non_root_with_a_healthcheck(service):
    steps = instructions(service)
    assert sum(cmd == "FROM" for cmd, _, _ in steps) >= 3, "deps, code and runtime stages"
    final = final_stage(service)
    users = [args[0] for cmd, _, args in final if cmd == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0", "numeric non-root"
    assert any(cmd == "HEALTHCHECK" for cmd, _, _ in final)
    assert any(cmd == "CMD" for cmd, _, _ in final)
    # The runtime stage copies built artefacts only: no compilers, no pip install.
    assert not any(cmd == "RUN" and "pip install" in " ".join(args) for cmd, _, args in final)


STANDINS = ROOT / "deploy" / "compose" / "standins" / "Dockerfile"


@pytest.mark.parametrize(
    "path", sorted({*DOCKERFILES.values(), STANDINS}), ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_no_frontend_is_fetched_from_a_registry(path):
    # #22: `# syntax=docker/dockerfile:…` makes BuildKit pull a frontend image first: every build failed in
    # 0.5 s on a machine that reaches no registry. The engine's built-in frontend reads these files.
    assert not any(line.lower().replace(" ", "").startswith("#syntax=") for line in path.read_text().splitlines())


@pytest.mark.parametrize("service", SERVICES)
def test_the_project_runs_where_its_code_is(service):
    # #22: the worker's models stage ran `python -m services.worker…` in /build, where the deps stage's stub
    # `services/__init__.py` came first on sys.path and hid the real package. (`make images` builds it too.)
    by_name = stages(service)
    for name, steps in by_name.items():
        chain, base = list(steps), steps[0][2][0]
        while base in by_name:
            chain, base = by_name[base] + chain, by_name[base][0][2][0]
        workdir = None
        for cmd, _, values in chain:
            if cmd == "WORKDIR":
                workdir = values[0]
            if cmd == "RUN" and re.search(r"python -m (services|shared)\.", " ".join(values)):
                assert workdir == "/app", f"{name}: {' '.join(values)} runs in {workdir}"


@pytest.mark.parametrize("service", ["gateway", "janitor"])
def test_gateway_and_janitor_images_carry_no_torch(service):
    text = DOCKERFILES[service].read_text()
    assert '".[${SERVICE}]"' in text and service in extras(), "installs its own pyproject extra"
    assert service in stages(service), f"a final stage of its own: --target {service}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"] + extras()[service]:
        assert not re.match(r"(torch|onnx)\b", requirement), f"{requirement} in the {service} image"
    assert "download.pytorch.org" not in text
    assert "find_spec('torch')" in text, "the build fails if torch sneaks in"


def test_worker_image_installs_the_projects_torch_from_the_cuda_index():
    steps = instructions("worker")
    args = {
        a.split("=", 1)[0]: a.split("=", 1)[1] for cmd, _, values in steps if cmd == "ARG" for a in values if "=" in a
    }
    assert args["TORCH_VERSION"] == torch_pin(), "the same torch as pyproject.toml"
    assert args["TORCH_VARIANT"].startswith("cu")
    # #22: PyTorch's index by default, any mirror of it (or a folder of wheels served over HTTP) by argument;
    # only torch itself comes from there, everything else from PIP_INDEX_URL (PyPI when unset).
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/${TORCH_VARIANT}"
    run_lines = [" ".join(values) for cmd, _, values in steps if cmd == "RUN"]
    torch_install = next(line for line in run_lines if "torch==${TORCH_VERSION}" in line)
    assert 'pip install --no-deps --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"' in torch_install
    assert torch_install.index("torch==") < torch_install.index('".[worker]"'), "torch before the rest"
    assert "pip check" in torch_install, "torch's own dependencies, installed by the second pip, all there"
    assert any("services.worker.engine.weights --model-dir /models" in line for line in run_lines)
    env = " ".join(" ".join(values) for cmd, _, values in final_stage("worker") if cmd == "ENV")
    assert "PORTRAITS_MODEL_DIR /models" in env
    copies = [(flags, values) for cmd, flags, values in final_stage("worker") if cmd == "COPY"]
    assert (("--from=models",), ("/models", "/models")) in copies


def test_compose_builds_each_torch_free_service_from_its_own_stage_and_extra():
    # One Dockerfile for two images (#12): --target and SERVICE must name the same service, or the gateway
    # image would carry the janitor's dependencies (or the other way round).
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    built = {
        name: service["build"]
        for name, service in services.items()
        if service.get("build", {}).get("dockerfile") == TORCHFREE.relative_to(ROOT).as_posix()
    }
    assert {build["target"] for build in built.values()} == {"gateway", "janitor"}
    for name, build in built.items():
        assert build["args"] == {"SERVICE": build["target"]}, name
        assert services[name]["image"].startswith(f"portraits-{build['target']}:"), name


@pytest.mark.parametrize("service", SERVICES)
def test_every_image_installs_its_locked_constraints(service):
    # #12: the transitive dependencies too come at the versions CI tested (tests/deploy/test_locks.py).
    steps = instructions(service)
    copies = [values for cmd, _, values in steps if cmd == "COPY" and values[0].startswith("constraints/")]
    lock = "constraints/${SERVICE}.txt" if TARGETS[service] else f"constraints/{service}.txt"
    assert copies == [(lock, "constraints.txt")]
    installs = [" ".join(v) for cmd, _, v in steps if cmd == "RUN" and "pip install" in " ".join(v)]
    extra = '".[${SERVICE}]"' if TARGETS[service] else f'".[{service}]"'
    assert any(f"pip install --constraint constraints.txt {extra}" in line for line in installs), installs


def test_dockerignore_keeps_the_context_small_and_private():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines, "allow-list: everything else (.env, .venv, var/, .git) stays out"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "constraints/*.txt", "services", "shared"}


# ------------------------------------------------------------------------ the images' own commands


def _imports_of(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PORTRAITS_LOG_JSON": "false"},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


# What the gateway and janitor images run (tests/unit/test_service_imports.py covers the app modules).
@pytest.mark.parametrize(
    "module",
    ["services.gateway.wsgi", "services.gateway.gunicorn_conf", "services.janitor.main", "services.janitor.probe"],
)
def test_gateway_and_janitor_entry_points_import_no_torch(module):
    assert _imports_of(module) == set()


def test_gateway_command_loads_its_gunicorn_config():
    [cmd] = [args for c, _, args in final_stage("gateway") if c == "CMD"]
    assert cmd[0] == "gunicorn"
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    result = subprocess.run(
        [gunicorn, "--check-config", *cmd[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PORTRAITS_GATEWAY_BIND": "127.0.0.1:0"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_worker_command_starts_celery_as_pid_1_on_the_configured_queue():
    [cmd] = [args for c, _, args in final_stage("worker") if c == "CMD"]
    assert cmd[:2] == ("sh", "-c")
    script = cmd[2]
    assert "exec celery -A services.worker.app worker" in script
    assert '--queues "${PORTRAITS_QUEUE_NAME:-portraits}"' in script
    assert 'rm -rf "$PROMETHEUS_MULTIPROC_DIR"' in script.split("exec")[0], "stale metrics files cleared first"


@pytest.mark.parametrize("service", ["gateway", "janitor"])
def test_module_entry_points_exist(service):
    [cmd] = [args for c, _, args in final_stage(service) if c == "CMD"]
    module = cmd[cmd.index("-m") + 1] if "-m" in cmd else cmd[-1].split(":")[0]
    assert (
        subprocess.run(
            [sys.executable, "-c", f"import importlib.util as u; assert u.find_spec('{module}')"],
            cwd=ROOT,
            timeout=60,
            check=False,
        ).returncode
        == 0
    )
