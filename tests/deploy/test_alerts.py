"""Alert rules: promtool accepts them, each alert has a unit test and a runbook, the unit tests pass, and
every metric they read is one the services export. The Prometheus configs for compose and `make run` load
them."""

from __future__ import annotations

import shutil

import pytest
import yaml

from tests.deploy.helpers import DEPLOY, rendered, run, tool
from tests.deploy.promql import allowed_metrics, metric_names

RULES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))


def alert_rules() -> list[dict]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_promtool_checks_the_rules():
    assert RULES
    run(tool("promtool"), "check", "rules", *map(str, RULES))


def test_promtool_unit_tests_pass():
    assert TESTS
    run(tool("promtool"), "test", "rules", *map(str, TESTS))


def test_every_alert_has_a_unit_test_a_severity_and_a_runbook():
    tested = {
        case["alertname"]
        for path in TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    for rule in alert_rules():
        assert rule["alert"] in tested, f"{rule['alert']}: no promtool test where it fires"
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["runbook"].strip() and rule["annotations"]["summary"].strip(), rule["alert"]


def test_rules_read_only_exported_metrics():
    allowed = allowed_metrics()
    for rule in alert_rules():
        unknown = metric_names(rule["expr"]) - allowed
        assert not unknown, f"{rule['alert']} reads metrics nobody exports: {unknown}"


def test_the_kubernetes_rule_is_the_same_rules():
    [rule] = [d for d in rendered("monitoring") if d["kind"] == "PrometheusRule"]
    groups = [g for path in RULES for g in yaml.safe_load(path.read_text())["groups"]]
    assert rule["spec"]["groups"] == groups


@pytest.mark.parametrize("config", ["prometheus/local.yml", "compose/prometheus.yml"])
def test_prometheus_configs_load_the_rules_and_scrape_every_service(config, tmp_path):
    source = DEPLOY / config
    text = source.read_text()
    if config.startswith("compose/"):
        # In the container the rules are mounted at /etc/prometheus/rules.
        shutil.copytree(DEPLOY / "prometheus" / "rules", tmp_path / "rules")
        text = text.replace("/etc/prometheus/rules/", f"{tmp_path}/rules/")
        source = tmp_path / "prometheus.yml"
        source.write_text(text)
    out = run(tool("promtool"), "check", "config", str(source)).stdout
    assert f"SUCCESS: {len(RULES)} rule files found" in out
    jobs = {job["job_name"] for job in yaml.safe_load(text)["scrape_configs"]}
    assert {"gateway", "worker", "janitor"} <= jobs
