"""The three images run as the Kubernetes manifests run them — non-root, read-only root filesystem, every
capability dropped, no new privileges, /tmp the only writable place — against the session's real Redis and
SeaweedFS (on the host's network, as the integration tests' servers), and paint a real portrait (#22)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.containers.engine import Engine
from scripts.devstack import free_ports
from scripts.support.service_settings import service_settings
from tests.containers import harness

# Each container with the securityContext of deploy/k8s/base (runAsNonRoot, readOnlyRootFilesystem,
# capabilities drop ALL, allowPrivilegeEscalation false) and its emptyDir at /tmp.
LOCKED_DOWN = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true")
IMAGES = {"gateway": "portraits-gateway:local", "worker": "portraits-worker:cpu", "janitor": "portraits-janitor:local"}
OUTPUT_SIZE = 512


@pytest.fixture(scope="module")
def stack(engine: Engine, redis_server, s3_server) -> Iterator[tuple[str, object]]:
    settings = service_settings(
        redis_server.url, s3_server, queue_name="containers", sources_bucket="ct-sources", results_bucket="ct-results"
    )
    gateway_port, worker_metrics, janitor_metrics = free_ports(3)
    env = {
        "PORTRAITS_REDIS_URL": settings.redis_url,
        "PORTRAITS_S3_ENDPOINT_URL": settings.s3_endpoint_url,
        "PORTRAITS_S3_ACCESS_KEY_ID": settings.s3_access_key_id,
        "PORTRAITS_S3_SECRET_ACCESS_KEY": settings.s3_secret_access_key.get_secret_value(),
        "PORTRAITS_SOURCES_BUCKET": settings.sources_bucket,
        "PORTRAITS_RESULTS_BUCKET": settings.results_bucket,
        "PORTRAITS_QUEUE_NAME": settings.queue_name,
        "PORTRAITS_OUTPUT_SIZE": str(OUTPUT_SIZE),
        "PORTRAITS_UPLOAD_RATE_LIMIT": "",
        "PORTRAITS_DEVICE": "cpu",
        "PORTRAITS_WORKER_PROCESSES": "1",
        # On the host's network: listen on loopback, on free ports (the images' defaults suit a pod).
        "PORTRAITS_METRICS_BIND_ADDRESS": "127.0.0.1",
        "PORTRAITS_GATEWAY_BIND": f"127.0.0.1:{gateway_port}",
        "PORTRAITS_WORKER_METRICS_PORT": str(worker_metrics),
        "PORTRAITS_JANITOR_METRICS_PORT": str(janitor_metrics),
    }
    names = {service: f"portraits-ct-{service}" for service in IMAGES}
    for name in names.values():
        engine.docker("rm", "--force", name, capture=True, check=False)
    try:
        for service, image in IMAGES.items():
            flags = [f"--env={key}={value}" for key, value in env.items()]
            # The images' own HEALTHCHECK commands, checked every 2 s instead of every 15-30 s.
            engine.docker(
                "run", "--detach", "--name", names[service], "--network", "host", *LOCKED_DOWN,
                "--health-interval", "2s", *flags, image, capture=True,
            )  # fmt: skip
        harness.wait_healthy(engine, list(names.values()))
        yield f"http://127.0.0.1:{gateway_port}", settings
    finally:
        for name in names.values():
            engine.docker("rm", "--force", "--volumes", name, capture=True, check=False)


def test_each_container_runs_locked_down_as_the_manifests_say(engine, stack):
    for service in IMAGES:
        name = f"portraits-ct-{service}"
        assert engine.docker("exec", name, "id", "-u", capture=True).stdout.strip() == "10001"
        refused = engine.docker("exec", name, "touch", "/app/written", capture=True, check=False)
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr
        assert engine.docker("exec", name, "touch", "/tmp/written", capture=True, check=False).returncode == 0
        status = engine.docker("exec", name, "grep", "^CapEff", "/proc/1/status", capture=True).stdout
        assert status.split()[1] == "0000000000000000", status


def test_the_workers_readiness_probe_passes(engine, stack):
    # The Kubernetes readiness probe's command (deploy/k8s/base: worker), inside the running container.
    probe = ("python", "-m", "services.worker.probe", "--ready")
    assert engine.docker("exec", "portraits-ct-worker", *probe, check=False).returncode == 0


def test_grace_hopper_is_painted_and_her_photo_erased(stack):
    gateway, settings = stack
    accepted, job, portrait = harness.paint_grace_hopper(gateway, "locked-down")
    assert job["family"] in ("oil", "watercolor", "ink") and job["reason"]
    harness.assert_portrait(portrait, OUTPUT_SIZE)
    harness.assert_source_erased_and_audited(settings, accepted["id"])
