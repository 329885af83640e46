"""Scaling the workers down never kills a render (#24).

KEDA hands scaling to the HPA, which picks the pod that goes, busy or not (keda#3674). What makes that safe is ours:
SIGTERM starts Celery's warm shutdown (the render in hand finishes, acks_late acknowledges it), so the pod's grace
period must outlast the longest render, and the HPA must give up one worker at a time. The SIGTERM-mid-render
behaviour itself is proven by scripts/chaos ("whole worker SIGTERM"); this checks the manifests give it room.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from shared.settings import Settings
from tests.deploy.helpers import one, rendered

# After the render's hard time limit: storing the result, acknowledging the task, the pool's exit.
SHUTDOWN_MARGIN_S = 30
OVERLAYS = ("overlays/dev", "overlays/dev-keda", "overlays/prod")
SCALED = ("overlays/dev-keda", "overlays/prod")


def default(setting: str) -> Any:
    return Settings.model_fields[setting].default


def grace(path: str) -> int:
    seconds: int = one(rendered(path), "Deployment", "portraits-worker")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    return seconds


def scale_down_problems(scaled: dict[str, Any], grace_s: int) -> list[str]:
    """What would let a scale-down kill a render or take several workers at once; empty when none."""
    longest = default("task_hard_time_limit") + SHUTDOWN_MARGIN_S
    problems = []
    if grace_s <= longest:
        problems.append(f"grace period {grace_s} s <= hard time limit + {SHUTDOWN_MARGIN_S} s = {longest} s")
    behavior = scaled["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {})
    down = behavior.get("scaleDown")
    if not down or not down.get("policies"):
        return [*problems, "no scaleDown policy: the HPA's default removes every surplus pod at once"]
    if down.get("selectPolicy") == "Disabled":
        return problems
    if down.get("stabilizationWindowSeconds", 300) < 60:
        problems.append("scaleDown stabilization under a minute: a lull between uploads drops workers")
    most = scaled["spec"]["maxReplicaCount"]
    for policy in down["policies"]:
        # The HPA applies the policy allowing the most change (selectPolicy Max, the default): each must allow
        # at most one pod per period, whatever the fleet's size.
        pods = policy["value"] if policy["type"] == "Pods" else math.ceil(policy["value"] * most / 100)
        if pods > 1:
            problems.append(f"{policy} removes {pods} pods per period")
        # One draining worker at a time: the next goes only once the last one's render has surely ended.
        if policy["periodSeconds"] < longest:
            problems.append(f"{policy}: period under the longest shutdown ({longest} s)")
    return problems


def test_the_time_limits_nest():
    assert default("task_soft_time_limit") < default("task_hard_time_limit")


@pytest.mark.parametrize("path", OVERLAYS)
def test_a_stopping_worker_outlasts_its_longest_render(path):
    grace_s = grace(path)
    assert grace_s > default("task_hard_time_limit") + SHUTDOWN_MARGIN_S
    # Yet under the visibility timeout: a worker killed at the end of its grace has its task redelivered then.
    assert grace_s < default("visibility_timeout")


@pytest.mark.parametrize("path", SCALED)
def test_scale_down_is_gentle(path):
    scaled = one(rendered(path), "ScaledObject", "portraits-worker")
    assert scale_down_problems(scaled, grace(path)) == []
    assert scaled["spec"]["minReplicaCount"] >= 1


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda s: s["policies"][0].update(value=2), "removes 2 pods"),
        (lambda s: s["policies"].append({"type": "Percent", "value": 50, "periodSeconds": 120}), "pods per period"),
        (lambda s: s.update(stabilizationWindowSeconds=0), "stabilization"),
        (lambda s: s["policies"][0].update(periodSeconds=30), "period under"),
        (lambda s: s.clear(), "no scaleDown policy"),
    ],
    ids=["two-pods", "percent", "no-window", "short-period", "default"],
)
def test_the_check_catches_a_harsh_scale_down(change, problem):
    scaled = copy.deepcopy(one(rendered("overlays/prod"), "ScaledObject", "portraits-worker"))
    change(scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"])
    assert any(problem in p for p in scale_down_problems(scaled, grace("overlays/prod")))


def test_the_check_catches_a_short_grace_period():
    scaled = one(rendered("overlays/prod"), "ScaledObject", "portraits-worker")
    assert scale_down_problems(scaled, default("task_hard_time_limit") + SHUTDOWN_MARGIN_S)
