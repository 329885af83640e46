"""docker-compose.yml: valid for the compose spec and for Docker Compose itself (`config`, no engine needed),
and shaped as the services need: healthchecks, start order, GPU reservation, loopback-only ports, and
credentials from .env, never literals."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.helpers import DEPLOY, ROOT, run, tool
from tests.deploy.test_images import final_stage

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / "compose" / ".env.example"
LONG_RUNNING = ("redis", "seaweedfs", "gateway", "worker", "worker-cpu", "janitor", "prometheus", "grafana")


def resolved(*profiles: str) -> dict[str, Any]:
    """The file as Docker Compose resolves it (interpolation, anchors, profiles), with .env.example."""
    args = [tool("docker-compose"), "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE)]
    for profile in profiles:
        args += ["--profile", profile]
    return yaml.safe_load(run(*args, "config").stdout)


def test_passes_the_compose_spec_schema():
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))


@pytest.mark.parametrize("profile", ["gpu", "cpu"])
def test_docker_compose_accepts_it(profile):
    services = resolved(profile)["services"]
    worker = "worker" if profile == "gpu" else "worker-cpu"
    assert {
        "redis",
        "seaweedfs-certs",
        "seaweedfs",
        "s3-init",
        "s3-cors",
        "gateway",
        worker,
        "janitor",
        "prometheus",
        "grafana",
    } == set(services)


def test_it_refuses_to_start_without_credentials():
    # --env-file /dev/null: ignore a developer's own .env.
    command = [tool("docker-compose"), "--env-file", "/dev/null", "-f", str(COMPOSE), "config", "--quiet"]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=False
    )
    assert result.returncode != 0 and ".env.example" in result.stderr


def test_gpu_worker_reserves_a_gpu_and_cpu_worker_does_not():
    services = resolved("gpu", "cpu")["services"]
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert services["worker"]["environment"]["PORTRAITS_DEVICE"] == "cuda"
    assert "deploy" not in services["worker-cpu"]
    assert services["worker-cpu"]["environment"]["PORTRAITS_DEVICE"] == "cpu"
    assert services["worker-cpu"]["build"]["args"]["TORCH_VARIANT"] == "cpu"
    # Both answer as `worker` for Prometheus, and get time to finish a render on shutdown (hard limit 90 s).
    for name in ("worker", "worker-cpu"):
        assert "worker" in services[name]["networks"]["default"]["aliases"]
        assert services[name]["stop_grace_period"] == "2m0s"


def test_healthchecks_and_start_order():
    services = resolved("gpu", "cpu")["services"]
    for name in LONG_RUNNING:
        service = services[name]
        assert "healthcheck" in service or name in ("worker", "worker-cpu", "janitor"), name
    for name in ("gateway", "worker", "worker-cpu", "janitor"):
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["s3-init"]["condition"] == "service_completed_successfully"
        assert depends["s3-cors"]["condition"] == "service_completed_successfully"  # CORS rules before the page
    assert services["s3-init"]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    assert services["s3-cors"]["depends_on"]["s3-init"]["condition"] == "service_completed_successfully"
    assert services["seaweedfs"]["depends_on"]["seaweedfs-certs"]["condition"] == "service_completed_successfully"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_images_without_their_own_healthcheck_use_the_dockerfiles():
    """The worker and janitor rely on their image's HEALTHCHECK (tests/deploy/test_images.py runs them)."""
    for name in ("worker", "janitor"):
        assert any(cmd == "HEALTHCHECK" for cmd, _, _ in final_stage(name)), name  # its image's stages (#12)


def test_app_containers_are_locked_down():
    services = resolved("gpu", "cpu")["services"]
    for name in ("gateway", "worker", "worker-cpu", "janitor"):
        service = services[name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "/tmp" in service["tmpfs"], name
        assert service["environment"]["PORTRAITS_METRICS_BIND_ADDRESS"] == "0.0.0.0"


def test_seaweedfs_grpc_certificates_go_only_where_needed():
    # Issue 9: gRPC mutual TLS. The servers get their key, s3-init (weed shell) only the client's; made by
    # grpc_certs.py in a one-shot container without network, never by hand, never committed.
    services = resolved("cpu")["services"]
    mounts = {
        name: {v["target"]: v.get("source") for v in services[name]["volumes"] if v["type"] == "volume"}
        for name in ("seaweedfs-certs", "seaweedfs", "s3-init")
    }
    assert mounts["seaweedfs-certs"] == {
        "/certs/server": "seaweedfs-grpc-server",
        "/certs/client": "seaweedfs-grpc-client",
    }
    assert mounts["seaweedfs"]["/certs"] == "seaweedfs-grpc-server"
    assert mounts["s3-init"] == {"/certs": "seaweedfs-grpc-client"}
    certs = services["seaweedfs-certs"]
    assert certs["entrypoint"] == ["python", "/seaweedfs/grpc_certs.py", "/certs"]
    assert certs["network_mode"] == "none" and certs["read_only"] is True and certs["cap_drop"] == ["ALL"]
    assert (DEPLOY / "seaweedfs" / "grpc_certs.py").is_file()


def test_seaweedfs_scripts_are_the_one_copy():
    # #12: compose mounts deploy/seaweedfs, the folder the dev overlay and the local run take them from too.
    services = resolved("cpu")["services"]
    for name in ("seaweedfs-certs", "seaweedfs", "s3-init", "s3-cors"):
        binds = {v["target"]: v["source"] for v in services[name]["volumes"] if v["type"] == "bind"}
        assert Path(binds["/seaweedfs"]) == DEPLOY / "seaweedfs", name


def test_published_ports_listen_on_loopback_only():
    for name, service in resolved("gpu", "cpu")["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port['published']} beyond loopback"


def test_seaweedfs_publishes_s3_only_and_keeps_its_other_ports_on_its_own_loopback():
    # #25: the master's UI and /cluster/status and the volume server's /status answer anyone who reaches their
    # port, and no weed flag closes them. Only S3 is published, and only S3 listens beyond the container's
    # loopback (start.sh's split, run for real in tests/deploy/test_seaweedfs_scripts.py), so neither the host
    # nor another container reaches the rest.
    services = resolved("gpu", "cpu")["services"]
    seaweedfs = services["seaweedfs"]
    assert [(p["host_ip"], p["published"], p["target"]) for p in seaweedfs["ports"]] == [("127.0.0.1", "8333", 8333)]
    env = seaweedfs["environment"]
    assert env["WEED_ADVERTISE_ADDRESS"] == env["WEED_BIND_ADDRESS"] == "127.0.0.1"
    assert env["WEED_S3_BIND_ADDRESS"] == "0.0.0.0"
    # weed shell reaches the master and the filer from inside seaweedfs's network namespace ...
    init = services["s3-init"]
    assert init["network_mode"] == "service:seaweedfs" and init["environment"]["WEED_MASTER"] == "127.0.0.1:9333"
    # ... and every other service knows SeaweedFS by its S3 port alone.
    for name, service in services.items():
        for value in (service.get("environment") or {}).values():
            for address in re.findall(r"seaweedfs:(\d+)", str(value)):
                assert address == "8333", f"{name} reaches seaweedfs:{address}"


def test_cors_lets_only_the_pages_origin_read():
    # #25: SeaweedFS allows the origin start.sh gets (-s3.allowedOrigins), and s3-cors narrows both buckets to
    # GET and HEAD from the same one (deploy/seaweedfs/bucket_cors.py): the gateway's page, as published.
    services = resolved("cpu")["services"]
    [gateway_port] = services["gateway"]["ports"]
    page = f"http://{gateway_port['host_ip']}:{gateway_port['published']}"
    assert services["seaweedfs"]["environment"]["PORTRAITS_PUBLIC_ORIGIN"] == page
    cors = services["s3-cors"]
    assert cors["environment"]["PORTRAITS_PUBLIC_ORIGIN"] == page
    assert cors["entrypoint"] == ["python", "/seaweedfs/bucket_cors.py"]
    assert cors["environment"]["PORTRAITS_S3_ENDPOINT_URL"] == "http://seaweedfs:8333"
    assert cors["read_only"] is True and cors["cap_drop"] == ["ALL"] and cors["restart"] == "no"
    assert (DEPLOY / "seaweedfs" / "bucket_cors.py").is_file()


def test_credentials_come_from_the_env_file_not_literals():
    text = COMPOSE.read_text()
    for match in re.finditer(r"^\s*(\w*(SECRET|PASSWORD|ACCESS_KEY)\w*):\s*(.+)$", text, re.MULTILINE):
        assert match.group(3).startswith("${"), f"{match.group(1)} must come from .env: {match.group(3)}"
    example = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )
    secrets = {k: v for k, v in example.items() if re.search("SECRET|PASSWORD|KEY", k)}
    assert secrets and all(v.startswith("replace-with") for v in secrets.values())


def test_env_file_is_not_committed():
    tracked = run("git", "ls-files", ".env", "deploy/compose/.env").stdout
    assert tracked == "", ".env holds credentials: never commit it"


def test_mounted_config_files_exist():
    for name, service in resolved("gpu", "cpu")["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert (ROOT / volume["source"]).exists(), f"{name}: {volume['source']}"
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file(), name
