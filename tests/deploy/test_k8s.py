"""The Kubernetes manifests: each overlay renders, every object validates against its schema, and the
deployment rules the services depend on hold (security, probes, secrets, scaling, limits).

About 430 lines, on purpose (#12): one test per deployment rule over the same rendered overlays.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from services.gateway.app import MULTIPART_OVERHEAD_BYTES
from shared.settings import Settings
from tests.deploy.helpers import K8S, OVERLAYS, find, one, python_module, rendered

# Oldest and newest Kubernetes versions the manifests are checked against (kubernetes-validate 1.37.0).
K8S_VERSIONS = ("1.31.0", "1.37.0")
CRD_GROUPS = ("keda.sh", "monitoring.coreos.com")


def default(setting: str) -> Any:
    """A setting's default in the code (the manifests are written for these; the environment may differ)."""
    return Settings.model_fields[setting].default


APPS = {"portraits-gateway": "gateway", "portraits-worker": "worker", "portraits-janitor": "janitor"}


def is_crd(doc: dict[str, Any]) -> bool:
    return doc["apiVersion"].split("/")[0] in CRD_GROUPS


def pod_specs(docs: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
    ]


def container(doc: dict[str, Any]) -> dict[str, Any]:
    containers = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(doc).get("env", [])}


def config(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    [cm] = [d for d in find(docs, "ConfigMap") if d["metadata"]["name"].startswith("portraits-config")]
    return cm["data"]


# ------------------------------------------------------------------------------------------ rendering


@pytest.mark.parametrize("path", ["base", "overlays/dev", "overlays/prod", "monitoring"])
def test_renders(path):
    assert rendered(path), f"kubectl kustomize deploy/k8s/{path} rendered nothing"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_objects_pass_strict_schema_validation(overlay, version):
    kubernetes_validate = python_module("kubernetes_validate")
    errors = []
    for doc in rendered(f"overlays/{overlay}"):
        if is_crd(doc):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except Exception as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {str(exc).splitlines()[0]}")
    assert not errors, "\n".join(errors)


def _crd_models() -> dict[tuple[str, str], Any]:
    keda = python_module("cloudcoil.models.keda.v1alpha1")
    prom = python_module("cloudcoil.models.prometheus_operator.v1")
    return {
        ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
        ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
        ("monitoring.coreos.com/v1", "ServiceMonitor"): prom.ServiceMonitor,
        ("monitoring.coreos.com/v1", "PodMonitor"): prom.PodMonitor,
        ("monitoring.coreos.com/v1", "PrometheusRule"): prom.PrometheusRule,
    }


def unknown_fields(given: Any, kept: Any, path: str = "") -> list[str]:
    """Paths present in `given` but dropped by the model: fields the CRD schema does not define."""
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            return [path or "."]
        return [
            p
            for key, value in given.items()
            for p in ([f"{path}.{key}"] if key not in kept else unknown_fields(value, kept[key], f"{path}.{key}"))
        ]
    if isinstance(given, list):
        if not isinstance(kept, list) or len(given) != len(kept):
            return [path]
        return [p for i, (a, b) in enumerate(zip(given, kept)) for p in unknown_fields(a, b, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("path", ["overlays/prod", "monitoring"])
def test_custom_resources_match_their_crd_schemas(path):
    """KEDA and prometheus-operator objects against models generated from their CRDs (cloudcoil: KEDA
    2.16, prometheus-operator 0.80): types and required fields by validation, unknown fields by what the
    model drops."""
    models = _crd_models()
    checked = 0
    for doc in rendered(path):
        if not is_crd(doc):
            continue
        model = models.get((doc["apiVersion"], doc["kind"]))
        assert model is not None, f"no schema for {doc['apiVersion']} {doc['kind']}"
        parsed = model.model_validate(doc)
        dropped = unknown_fields(doc, parsed.model_dump(by_alias=True, exclude_unset=True, mode="json"))
        assert not dropped, f"{doc['kind']}/{doc['metadata']['name']}: fields not in the CRD schema: {dropped}"
        checked += 1
    assert checked


def test_the_crd_check_catches_a_misspelt_field():
    models = _crd_models()
    doc = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"name": "x"}, "minReplicaCout": 1, "triggers": []},
    }
    parsed = models[("keda.sh/v1alpha1", "ScaledObject")].model_validate(doc)
    assert unknown_fields(doc, parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")) == [
        ".spec.minReplicaCout"
    ]


# ---------------------------------------------------------------------------------- pods: security


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_locked_down(overlay):
    for where, spec in pod_specs(rendered(f"overlays/{overlay}")):
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, where
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        assert spec.get("automountServiceAccountToken") is False, where
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities") == {"drop": ["ALL"]}, where
            assert {"requests", "limits"} <= set(c.get("resources", {})), f"{where}: requests and limits"
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), where
            # A read-only root needs a writable /tmp.
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]], f"{where}: emptyDir on /tmp"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_env_vars_are_either_values_or_references(overlay):
    for d in find(rendered(f"overlays/{overlay}"), "Deployment"):
        for name, var in env(d).items():
            assert ("value" in var) != ("valueFrom" in var), f"{d['metadata']['name']}: {name}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_credentials_come_from_secrets(overlay):
    docs = rendered(f"overlays/{overlay}")
    for name in APPS:
        variables = env(one(docs, "Deployment", name))
        for var in ("PORTRAITS_S3_ACCESS_KEY_ID", "PORTRAITS_S3_SECRET_ACCESS_KEY", "PORTRAITS_REDIS_URL"):
            assert "secretKeyRef" in variables[var].get("valueFrom", {}), f"{name}: {var}"


def test_prod_ships_no_secret_and_expects_the_documented_ones():
    docs = rendered("overlays/prod")
    assert not find(docs, "Secret"), "production Secrets are created outside the repository"
    referenced = {
        (ref["name"], ref["key"])
        for d in find(docs, "Deployment")
        for var in env(d).values()
        if (ref := var.get("valueFrom", {}).get("secretKeyRef"))
    }
    trigger_auth = one(docs, "TriggerAuthentication", "portraits-redis")
    referenced |= {(r["name"], r["key"]) for r in trigger_auth["spec"]["secretTargetRef"]}
    example = list(yaml.safe_load_all((K8S / "overlays/prod/secret.example.yaml").read_text()))
    documented = {(s["metadata"]["name"], key) for s in example for key in s["stringData"]}
    assert referenced <= documented, f"not in secret.example.yaml: {referenced - documented}"
    # Placeholders only: every value names what to put there, or an example.internal host.
    assert all("REPLACE_WITH" in value or ".example." in value for s in example for value in s["stringData"].values())


def test_dev_generates_only_the_passwordless_redis_url():
    [secret] = find(rendered("overlays/dev"), "Secret")
    assert secret["metadata"]["name"].startswith("portraits-redis")
    assert set(secret["data"]) == {"url"}


# ------------------------------------------------------------------------------------- components


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway(overlay):
    docs = rendered(f"overlays/{overlay}")
    gateway = one(docs, "Deployment", "portraits-gateway")
    variables = env(gateway)
    assert variables["PORTRAITS_TRUSTED_PROXY_HOPS"]["value"] == "1"  # behind exactly one ingress hop
    assert variables["PORTRAITS_GATEWAY_BIND"]["value"] == "0.0.0.0:8080"
    c = container(gateway)
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "replicas" not in gateway["spec"], "the HPA owns the replica count"
    assert one(docs, "HorizontalPodAutoscaler", "portraits-gateway")["spec"]["scaleTargetRef"]["name"] == (
        "portraits-gateway"
    )
    assert one(docs, "PodDisruptionBudget", "portraits-gateway")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_fits_the_gateway_limits(overlay):
    ingress = one(rendered(f"overlays/{overlay}"), "Ingress", "portraits-gateway")
    notes = ingress["metadata"]["annotations"]
    body = notes["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert body.endswith("m")
    # Above the gateway's own limit (so it answers the 413 itself), but not by much.
    largest_request = default("max_upload_bytes") + MULTIPART_OVERHEAD_BYTES
    assert largest_request < int(body[:-1]) * 2**20 <= largest_request + 2 * 2**20
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[f"nginx.ingress.kubernetes.io/{timeout}"]) > default("gateway_timeout")
    assert notes["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths == ["/v1"], "only the API is public: not /metrics, /healthz or /readyz"


def test_prod_ingress_has_tls_and_a_host():
    ingress = one(rendered("overlays/prod"), "Ingress", "portraits-gateway")
    assert ingress["spec"]["tls"] and ingress["spec"]["rules"][0]["host"]


def test_prod_worker_is_a_gpu_worker():
    worker = one(rendered("overlays/prod"), "Deployment", "portraits-worker")
    spec = worker["spec"]["template"]["spec"]
    resources = container(worker)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1" == resources["requests"]["nvidia.com/gpu"]
    assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert env(worker)["PORTRAITS_DEVICE"]["value"] == "cuda"
    assert "replicas" not in worker["spec"], "KEDA owns the replica count"


def test_dev_worker_runs_on_the_cpu():
    worker = one(rendered("overlays/dev"), "Deployment", "portraits-worker")
    spec = worker["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in str(container(worker)["resources"])
    assert "nodeSelector" not in spec and "tolerations" not in spec
    assert env(worker)["PORTRAITS_DEVICE"]["value"] == "cpu"
    assert worker["spec"]["replicas"] == 1
    assert not find(rendered("overlays/dev"), "ScaledObject")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_shutdown_outlasts_the_hard_time_limit(overlay):
    worker = one(rendered(f"overlays/{overlay}"), "Deployment", "portraits-worker")
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert default("task_hard_time_limit") < grace < default("visibility_timeout")
    c = container(worker)
    ready = ["python", "-m", "services.worker.probe", "--ready"]
    assert c["startupProbe"]["exec"]["command"] == ready == c["readinessProbe"]["exec"]["command"]
    assert c["livenessProbe"]["exec"]["command"] == ["python", "-m", "services.worker.probe"]
    # Model loading and warm-up get minutes before liveness applies.
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 300


def test_scaled_object_reads_the_celery_queue():
    docs = rendered("overlays/prod")
    scaled = one(docs, "ScaledObject", "portraits-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "portraits-worker"
    triggers = {t["type"]: t for t in scaled["spec"]["triggers"]}
    queue = config(docs)["PORTRAITS_QUEUE_NAME"]
    assert triggers["redis"]["metadata"]["listName"] == queue
    assert triggers["redis"]["authenticationRef"]["name"] == "portraits-redis"
    # In-flight work counts too: busy processes plus waiting tasks.
    assert 'state="busy"' in triggers["prometheus"]["metadata"]["query"]
    assert scaled["spec"]["minReplicaCount"] >= 1, "no scale to zero: cold GPU starts outlast a photo's life"
    assert scaled["spec"]["maxReplicaCount"] > scaled["spec"]["minReplicaCount"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_janitor_runs_twice(overlay):
    janitor = one(rendered(f"overlays/{overlay}"), "Deployment", "portraits-janitor")
    assert janitor["spec"]["replicas"] == 2
    c = container(janitor)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["exec"]["command"] == ["python", "-m", "services.janitor.probe"]
    # A dependency outage stalls sweeps too: liveness waits minutes before restarting anything.
    assert c["livenessProbe"]["periodSeconds"] * c["livenessProbe"]["failureThreshold"] >= 300


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_metrics_listen_beyond_loopback(overlay):
    assert config(rendered(f"overlays/{overlay}"))["PORTRAITS_METRICS_BIND_ADDRESS"] == "0.0.0.0"


# ------------------------------------------------------------------------------------- network


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies(overlay):
    policies = {p["metadata"]["name"]: p["spec"] for p in find(rendered(f"overlays/{overlay}"), "NetworkPolicy")}
    deny = policies["portraits-default-deny"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    # Only the gateway admits the ingress controller.
    from_ingress = [
        name
        for name, spec in policies.items()
        for rule in spec.get("ingress", [])
        for peer in rule.get("from", [])
        if peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
        == "ingress-nginx"
    ]
    assert from_ingress == ["portraits-gateway-ingress"]
    assert policies["portraits-gateway-ingress"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "gateway"
    )
    # Prometheus reaches every metrics port.
    metrics_ports = {
        port["port"]
        for spec in policies.values()
        for rule in spec.get("ingress", [])
        if any(
            peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "monitoring"
            for peer in rule.get("from", [])
        )
        for port in rule.get("ports", [])
    }
    assert {8080, 9101, 9102} <= metrics_ports
    # Egress of the services: DNS, Redis, S3 and nothing else.
    egress_ports = {
        (port.get("protocol", "TCP"), port["port"])
        for name, spec in policies.items()
        if name.startswith("portraits-")
        for rule in spec.get("egress", [])
        for port in rule.get("ports", [])
    }
    assert egress_ports == {("UDP", 53), ("TCP", 53), ("TCP", 6379), ("TCP", 443), ("TCP", 80)}
    # Port 80 only for the janitor's webhooks (#10), and only to public addresses: never the metadata
    # service or the cluster's own networks.
    port_80 = [
        name
        for name, spec in policies.items()
        for rule in spec.get("egress", [])
        if ("TCP", 80) in {(port.get("protocol", "TCP"), port["port"]) for port in rule.get("ports", [])}
    ]
    assert port_80 == ["portraits-webhooks-egress"]
    webhooks = policies["portraits-webhooks-egress"]
    assert webhooks["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "janitor"
    [rule] = webhooks["egress"]
    blocks = {peer["ipBlock"]["cidr"]: set(peer["ipBlock"]["except"]) for peer in rule["to"]}
    assert {"10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"} <= blocks["0.0.0.0/0"]
    assert {"fc00::/7", "fe80::/10"} <= blocks["::/0"]


def test_dev_seaweedfs_grpc_is_mutual_tls_with_keys_only_where_needed():
    # Issue 9: the server gets the seaweedfs-grpc-server Secret, the init Job (weed shell) only the client's;
    # both are made by the documented setup commands, never shipped in the overlay.
    docs = rendered("overlays/dev")
    kustomization = (K8S / "overlays/dev/kustomization.yaml").read_text()
    for doc, secret in (
        (one(docs, "StatefulSet", "seaweedfs"), "seaweedfs-grpc-server"),
        (one(docs, "Job", "seaweedfs-init"), "seaweedfs-grpc-client"),
    ):
        spec = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m for m in container(doc)["volumeMounts"]}
        certs = volumes[mounts["/certs"]["name"]]
        assert certs["secret"]["secretName"] == secret and mounts["/certs"]["readOnly"] is True
        assert spec["securityContext"]["fsGroup"] == 1000 and certs["secret"]["defaultMode"] == 0o440
        assert f"create secret generic {secret}" in kustomization
    assert not [s for s in find(docs, "Secret") if s["metadata"]["name"].startswith("seaweedfs-grpc")]
    # The init Job reaches the master and the filer's gRPC port only: the filer's HTTP port is off.
    policies = {p["metadata"]["name"]: p["spec"] for p in find(docs, "NetworkPolicy")}
    init_ports = {
        port["port"]
        for rule in policies["seaweedfs"]["ingress"]
        for peer in rule["from"]
        if peer["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": "seaweedfs-init"}
        for port in rule["ports"]
    }
    assert init_ports == {19333, 18888}  # weed shell dials gRPC only, the HTTP port -master= names never
    assert 8888 not in {
        port["port"] for rule in policies["seaweedfs-clients-egress"]["egress"] for port in rule["ports"]
    }


SEAWEEDFS_POD = {"app.kubernetes.io/name": "seaweedfs"}
SEAWEEDFS_GRPC = {19333, 18888}  # the master's and the filer's: mutual TLS (issue 9), for the init Job's weed shell


def test_dev_seaweedfs_exposes_s3_alone():
    # #25: the master's UI (/, /ui/index.html) and /cluster/status and the volume server's /status (disk use,
    # per-bucket file and delete counts) answer anyone who reaches their port; no weed flag closes them. The
    # Service clients use has S3 alone; the headless one the init Job dials has the gRPC ports alone.
    docs = rendered("overlays/dev")
    services = {
        s["metadata"]["name"]: s["spec"]
        for s in find(docs, "Service")
        if s["spec"].get("selector", {}).get("app.kubernetes.io/name") == "seaweedfs"
    }
    assert [(p["name"], p["port"]) for p in services.pop("seaweedfs")["ports"]] == [("s3", 8333)]
    assert {name: (spec["clusterIP"], {p["port"] for p in spec["ports"]}) for name, spec in services.items()} == {
        "seaweedfs-grpc": ("None", SEAWEEDFS_GRPC)
    }
    assert env(one(docs, "Job", "seaweedfs-init"))["WEED_MASTER"]["value"] == "seaweedfs-grpc:9333"


def test_dev_network_policy_keeps_seaweedfs_http_ports_to_the_pod_itself():
    # #25: every port but S3's is admitted from the SeaweedFS pod itself only (its parts reach each other at
    # the pod's address), but for the gRPC ports from the init Job; and no client is let out to any other.
    policies = {p["metadata"]["name"]: p["spec"] for p in find(rendered("overlays/dev"), "NetworkPolicy")}
    spec = policies["seaweedfs"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    for rule in spec["ingress"]:
        peers = [peer["podSelector"] for peer in rule["from"]]  # no rule without `from`: that would be anyone
        if peers == [{"matchLabels": SEAWEEDFS_POD}]:
            continue  # the pod itself, every port
        ports = {port["port"] for port in rule["ports"]}  # no other rule without `ports`: that would be all
        init = {"matchLabels": {"app.kubernetes.io/name": "seaweedfs-init"}}
        assert ports == {8333} or (peers == [init] and ports == SEAWEEDFS_GRPC), rule
    # Egress towards SeaweedFS from anything else: S3, or the gRPC ports for the init Job.
    for name, other in policies.items():
        if other["podSelector"].get("matchLabels") == SEAWEEDFS_POD:
            continue
        for rule in other.get("egress", []):
            if any(peer.get("podSelector", {}).get("matchLabels") == SEAWEEDFS_POD for peer in rule.get("to", [])):
                assert {port["port"] for port in rule["ports"]} in ({8333}, SEAWEEDFS_GRPC), name


def test_dev_cors_lets_only_the_pages_origin_read():
    # #25: SeaweedFS allows PORTRAITS_PUBLIC_ORIGIN (start.sh's -s3.allowedOrigins), and the seaweedfs-cors
    # Job narrows both buckets to GET and HEAD from it (deploy/seaweedfs/bucket_cors.py, from the scripts'
    # ConfigMap, in the janitor image: boto3). The origin is the gateway's port-forward.
    docs = rendered("overlays/dev")
    kustomization = (K8S / "overlays/dev/kustomization.yaml").read_text()
    assert config(docs)["PORTRAITS_PUBLIC_ORIGIN"] == "http://127.0.0.1:8080"
    assert "port-forward svc/portraits-gateway 8080:" in kustomization
    origin = env(one(docs, "StatefulSet", "seaweedfs"))["PORTRAITS_PUBLIC_ORIGIN"]
    assert origin["valueFrom"]["configMapKeyRef"]["key"] == "PORTRAITS_PUBLIC_ORIGIN"
    job = one(docs, "Job", "seaweedfs-cors")
    cors = container(job)
    assert cors["command"] == ["python", "/scripts/bucket_cors.py"]
    assert cors["image"].startswith("portraits-janitor:")
    [scripts] = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "scripts"]
    assert scripts["configMap"]["name"].startswith("seaweedfs-scripts")
    assert [e["configMapRef"]["name"].startswith("portraits-config") for e in cors["envFrom"]] == [True]
    assert {v["valueFrom"]["secretKeyRef"]["name"] for v in cors["env"]} == {"portraits-s3"}
    assert "/certs" not in {m["mountPath"] for m in cors["volumeMounts"]}  # S3 keys only, no gRPC certificate


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_enforces_restricted_pod_security(overlay):
    [namespace] = find(rendered(f"overlays/{overlay}"), "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# ------------------------------------------------------------------------------------- monitoring


def test_monitors_cover_every_service_with_component_job_names():
    docs = rendered("monitoring")
    monitors = find(docs, "ServiceMonitor") + find(docs, "PodMonitor")
    components = {m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for m in monitors}
    assert components == set(APPS.values())
    assert all(m["spec"]["jobLabel"] == "app.kubernetes.io/component" for m in monitors)
    prod = rendered("overlays/prod")
    # The monitors' ports exist on what they select.
    service = one(prod, "Service", "portraits-gateway")
    assert "http" in {p["name"] for p in service["spec"]["ports"]}
    for name in ("portraits-worker", "portraits-janitor"):
        assert "metrics" in {p["name"] for p in container(one(prod, "Deployment", name))["ports"]}


def test_dashboards_are_configmaps_for_the_grafana_sidecar():
    maps = find(rendered("monitoring"), "ConfigMap")
    assert len(maps) == 3
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        [(key, text)] = cm["data"].items()
        assert key.endswith(".json") and len(text.encode()) < 200_000  # under kubectl apply's annotation cap
