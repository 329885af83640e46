"""Redis with failover in the dev overlay (#24): a primary and a replica watched by three Sentinels, the services
finding the primary through them, and KEDA (overlays/dev-keda) reading the queue the same way.

NetworkPolicies are checked by evaluating them (who may reach whom on which port), not by their text.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from shared.settings import Settings
from tests.deploy.helpers import ROOT, find, one, python_module, rendered
from tests.deploy.test_k8s import K8S_VERSIONS, _crd_models, config, container, env, is_crd, unknown_fields

Docs = tuple[dict[str, Any], ...]
Labels = dict[str, str]

DEV = "overlays/dev"
DEV_KEDA = "overlays/dev-keda"
SENTINEL_PORT = 26379
REDIS_PORT = 6379
SERVICES = ("portraits-gateway", "portraits-worker", "portraits-janitor")
# The redis-sentinel trigger's metadata keys (KEDA 2.16's docs). The CRD types metadata as a map of strings, so
# the schema check cannot catch a misspelt key: this list does.
KEDA_SENTINEL_KEYS = {
    "addresses", "addressesFromEnv", "hosts", "hostsFromEnv", "ports", "portsFromEnv",
    "usernameFromEnv", "passwordFromEnv", "sentinelUsernameFromEnv", "sentinelPasswordFromEnv",
    "sentinelMaster", "sentinelMasterFromEnv", "listName", "listLength", "activationListLength",
    "keyName", "keyValue", "activationValue", "enableTLS", "unsafeSsl", "databaseIndex",
}  # fmt: skip


def dev_settings(docs: Docs) -> Settings:
    """The settings every service of the overlay starts with: its ConfigMap and the Redis URL Secret."""
    fields = {name: value for name, value in config(docs).items() if name.startswith("PORTRAITS_")}
    [secret] = [s for s in find(docs, "Secret") if s["metadata"]["name"].startswith("portraits-redis")]
    fields["PORTRAITS_REDIS_URL"] = base64.b64decode(secret["data"]["url"]).decode()
    values = {name.removeprefix("PORTRAITS_").lower(): value for name, value in fields.items()}
    return Settings(**{name: value for name, value in values.items() if name in Settings.model_fields})


def script(docs: Docs, name: str) -> str:
    [scripts] = [c for c in find(docs, "ConfigMap") if c["metadata"]["name"].startswith("redis-scripts")]
    text: str = scripts["data"][name]
    return text


def config_ref(var: dict[str, Any]) -> str:
    """The portraits-config key an env var reads (failing for anything else)."""
    ref = var["valueFrom"]["configMapKeyRef"]
    assert ref["name"].startswith("portraits-config"), ref
    key: str = ref["key"]
    return key


def pod_names(statefulset: dict[str, Any]) -> list[str]:
    name, service = statefulset["metadata"]["name"], statefulset["spec"]["serviceName"]
    return [f"{name}-{i}.{service}" for i in range(statefulset["spec"]["replicas"])]


# ------------------------------------------------------------------------------------------- images


def test_every_redis_container_runs_the_one_pinned_image():
    # tests/deploy/test_redis_version.py pins the minor version; this keeps Redis and Sentinel on one exact tag,
    # compose's: a Sentinel of another version than the Redis it promotes is a mix nobody tested.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    images = {
        c["image"]
        for path in (DEV, DEV_KEDA)
        for d in rendered(path)
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
        for c in d["spec"]["template"]["spec"]["containers"] + d["spec"]["template"]["spec"].get("initContainers", [])
        if c["image"].split(":")[0].endswith("redis")
    }
    assert images == {compose["services"]["redis"]["image"]}


# ------------------------------------------------------------------------------------ the Redis set


def test_a_primary_and_a_replica_named_by_their_pods():
    docs = rendered(DEV)
    redis = one(docs, "StatefulSet", "redis")
    assert redis["spec"]["replicas"] == 2
    names = pod_names(redis)
    variables = env(redis)
    assert variables["REDIS_HOSTS"]["value"].split() == names  # the script's list is the StatefulSet's pods
    assert config_ref(variables["PORTRAITS_REDIS_SENTINELS"]) == "PORTRAITS_REDIS_SENTINELS"
    assert config_ref(variables["SENTINEL_MASTER"]) == "PORTRAITS_REDIS_SENTINEL_MASTER"
    # Headless, so a pod's own name resolves (and nothing balances writes onto the replica), and published
    # before readiness, so the replica finds the primary while both start.
    service = one(docs, "Service", redis["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    text = script(docs, "redis.sh")
    assert 'self="$(hostname).redis"' in text and "replica-announce-ip $self" in text  # names, never pod IPs
    assert "replicaof $master 6379" in text
    assert "appendonly yes" in text and "protected-mode no" in text  # as the one-Redis overlay had it
    assert one(docs, "PodDisruptionBudget", "redis")["spec"]["maxUnavailable"] == 1


def test_three_sentinels_watch_portraits_with_a_majority_quorum():
    docs = rendered(DEV)
    sentinels = one(docs, "StatefulSet", "redis-sentinel")
    count = sentinels["spec"]["replicas"]
    variables = env(sentinels)
    quorum = int(variables["SENTINEL_QUORUM"]["value"])
    assert count == 3
    assert count // 2 < quorum <= count  # a majority: two partitions can never both fail over
    assert config(docs)[config_ref(variables["SENTINEL_MASTER"])] == "portraits"
    assert variables["REDIS_HOSTS"]["value"].split() == pod_names(one(docs, "StatefulSet", "redis"))
    lines = [line.strip() for line in script(docs, "sentinel.sh").splitlines()]
    # Hostnames must be switched on before `sentinel monitor` names the primary by its hostname.
    monitor = lines.index("sentinel monitor $SENTINEL_MASTER $master 6379 $SENTINEL_QUORUM")
    assert lines.index("sentinel resolve-hostnames yes") < monitor
    assert "sentinel announce-hostnames yes" in lines and "sentinel announce-ip $self" in lines
    assert "sentinel down-after-milliseconds $SENTINEL_MASTER 5000" in lines
    assert "sentinel failover-timeout $SENTINEL_MASTER 30000" in lines
    assert one(docs, "PodDisruptionBudget", "redis-sentinel")["spec"]["maxUnavailable"] == count - quorum


def test_services_find_the_primary_through_every_sentinel():
    docs = rendered(DEV)
    settings = dev_settings(docs)  # what the services parse: a bad list fails here as it would fail their start
    sentinels = one(docs, "StatefulSet", "redis-sentinel")
    service = one(docs, "Service", sentinels["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert {p["port"] for p in service["spec"]["ports"]} == {SENTINEL_PORT}
    assert settings.redis_sentinel_addresses == tuple((name, SENTINEL_PORT) for name in pod_names(sentinels))
    assert settings.redis_sentinel_master == "portraits"
    assert urlsplit(settings.redis_url).path == "/0"  # the database number, which the Sentinels do not give
    # The gateway waits for the one replica there is, never for more.
    assert settings.redis_wait_replicas == 1 == one(docs, "StatefulSet", "redis")["spec"]["replicas"] - 1
    for name in SERVICES:  # the settings reach each service through its envFrom
        refs = [e["configMapRef"]["name"] for e in container(one(docs, "Deployment", name)).get("envFrom", [])]
        assert any(ref.startswith("portraits-config") for ref in refs), name


# ------------------------------------------------------------------------------------------ network


def selects(selector: dict[str, Any], labels: Labels) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against a pod's labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def peer_is(peer: dict[str, Any], labels: Labels) -> bool:
    """A rule's peer against a pod of the overlay's own namespace. A namespaceSelector names other namespaces
    here; ipBlocks (the janitor's public-internet rule) exclude the private ranges pods live in."""
    if "ipBlock" in peer or "namespaceSelector" in peer:
        return False
    return selects(peer["podSelector"], labels)


def rule_admits(rule: dict[str, Any], peers_key: str, labels: Labels, port: int) -> bool:
    peers = rule.get(peers_key)
    ports = rule.get("ports")
    return (peers is None or any(peer_is(p, labels) for p in peers)) and (
        ports is None or any(p["port"] == port and p.get("protocol", "TCP") == "TCP" for p in ports)
    )


def allowed(policies: Iterable[dict[str, Any]], source: Labels, target: Labels, port: int) -> bool:
    """Whether NetworkPolicies let `source` open a TCP connection to `target`'s `port` (same namespace)."""
    policies = list(policies)

    def side(kind: str, pod: Labels, peer: Labels, rules_key: str, peers_key: str) -> bool:
        applying = [p for p in policies if kind in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], pod)]
        return not applying or any(
            rule_admits(rule, peers_key, peer, port) for p in applying for rule in p["spec"].get(rules_key, [])
        )

    return side("Egress", source, target, "egress", "to") and side("Ingress", target, source, "ingress", "from")


def pod_labels(docs: Docs) -> dict[str, Labels]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
    }


def test_network_policies_admit_exactly_the_redis_traffic_failover_needs():
    docs = rendered(DEV)
    policies = find(docs, "NetworkPolicy")
    pods = pod_labels(docs)
    redis, sentinel = pods["redis"], pods["redis-sentinel"]
    for name in SERVICES:
        assert allowed(policies, pods[name], sentinel, SENTINEL_PORT), f"{name} → Sentinel"
        assert allowed(policies, pods[name], redis, REDIS_PORT), f"{name} → Redis"
    assert allowed(policies, redis, redis, REDIS_PORT), "replica → primary"
    assert allowed(policies, sentinel, redis, REDIS_PORT), "Sentinel → Redis"
    assert allowed(policies, sentinel, sentinel, SENTINEL_PORT), "Sentinel → Sentinel"
    assert allowed(policies, redis, sentinel, SENTINEL_PORT), "redis.sh asks the Sentinels for the primary"
    # Nothing else reaches them, and they reach nothing else.
    for name in ("seaweedfs", "seaweedfs-init", "seaweedfs-cors"):
        assert not allowed(policies, pods[name], redis, REDIS_PORT), name
        assert not allowed(policies, pods[name], sentinel, SENTINEL_PORT), name
    assert not allowed(policies, redis, pods["seaweedfs"], 8333)
    assert not allowed(policies, sentinel, pods["portraits-gateway"], 8080)
    assert not allowed(policies, pods["portraits-gateway"], redis, SENTINEL_PORT)


def test_the_policy_evaluator_denies_what_no_rule_admits():
    # The test above is only as good as `allowed`: without the Sentinel rules, the services are cut off.
    policies = [p for p in find(rendered(DEV), "NetworkPolicy") if "sentinel" not in p["metadata"]["name"]]
    pods = pod_labels(rendered(DEV))
    assert not allowed(policies, pods["portraits-worker"], pods["redis-sentinel"], SENTINEL_PORT)
    assert allowed(policies, pods["portraits-worker"], pods["redis"], REDIS_PORT)


# --------------------------------------------------------------------------------------- dev-keda


def test_dev_keda_renders_and_validates():
    kubernetes_validate = python_module("kubernetes_validate")
    docs = rendered(DEV_KEDA)
    models = _crd_models()
    errors = []
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if is_crd(doc):
            parsed = models[(doc["apiVersion"], doc["kind"])].model_validate(doc)
            dropped = unknown_fields(doc, parsed.model_dump(by_alias=True, exclude_unset=True, mode="json"))
            errors += [f"{where}: not in the CRD schema: {dropped}"] if dropped else []
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except Exception as exc:
                errors.append(f"{where} ({version}): {str(exc).splitlines()[0]}")
    assert not errors, "\n".join(errors)
    assert "replicas" not in one(docs, "Deployment", "portraits-worker")["spec"], "KEDA owns the replica count"


def test_dev_keda_reads_the_queue_through_the_sentinels():
    docs = rendered(DEV_KEDA)
    settings = dev_settings(docs)
    [trigger] = one(docs, "ScaledObject", "portraits-worker")["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "redis-sentinel"
    assert set(meta) <= KEDA_SENTINEL_KEYS, set(meta) - KEDA_SENTINEL_KEYS
    addresses = tuple(
        (host.strip(), int(port)) for host, port in (a.rsplit(":", 1) for a in meta["addresses"].split(","))
    )
    assert addresses == settings.redis_sentinel_addresses  # the services' Sentinels
    assert meta["sentinelMaster"] == settings.redis_sentinel_master
    assert meta["listName"] == settings.queue_name
    assert meta["databaseIndex"] == urlsplit(settings.redis_url).path.strip("/")
    # KEDA's operator asks from its own namespace: a Sentinel, then the primary it names.
    policies = find(docs, "NetworkPolicy")
    pods = pod_labels(docs)
    for target, port in ((pods["redis-sentinel"], SENTINEL_PORT), (pods["redis"], REDIS_PORT)):
        assert any(
            selects(p["spec"]["podSelector"], target)
            and any(
                any(peer.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": "keda"}
                    for peer in rule.get("from", []))
                and port in {q["port"] for q in rule.get("ports", [])}
                for rule in p["spec"].get("ingress", [])
            )
            for p in policies
        ), port  # fmt: skip


@pytest.mark.parametrize("path", [DEV, DEV_KEDA])
def test_the_dev_services_carry_no_redis_host_of_their_own(path):
    # With Sentinels, the URL's host is ignored: it must at least name a pod of the set, never a balanced
    # address over primary and replica.
    docs = rendered(path)
    host = urlsplit(dev_settings(docs).redis_url).hostname
    assert host in {name.split(".")[0] + ".redis" for name in pod_names(one(docs, "StatefulSet", "redis"))}
