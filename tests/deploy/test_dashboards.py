"""Grafana dashboards as code: the generated files are current, every query parses (promql-parser and
promtool) and reads only metrics the services export, and the layout and data source are sound."""

from __future__ import annotations

import json
import sys

import yaml

from tests.deploy.helpers import DEPLOY, ROOT, run, tool
from tests.deploy.promql import allowed_metrics, as_promql, dashboards_module, metric_names

JSON_DIR = DEPLOY / "compose" / "grafana" / "dashboards"


def dashboards() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(JSON_DIR.glob("*.json"))}


def panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str, str]]:
    return [
        (uid, panel["title"], target["expr"])
        for uid, d in dashboards().items()
        for panel in panels(d)
        for target in panel["targets"]
    ]


def test_generated_files_are_current():
    result = run(sys.executable, str(DEPLOY / "dashboards" / "generate.py"), "--check", check=False)
    assert result.returncode == 0, result.stderr


def test_the_three_dashboards():
    found = dashboards()
    assert set(found) == {"portraits-overview", "portraits-privacy", "portraits-worker"}
    assert {d["uid"] for d in found.values()} == set(found), "file names are the uids"


def test_every_query_reads_only_exported_metrics():
    allowed = allowed_metrics()
    used: set[str] = set()
    for uid, title, expr in queries():
        names = metric_names(expr)
        assert names <= allowed, f"{uid} / {title}: unknown metrics {names - allowed}"
        used |= names
    externals = dashboards_module().EXTERNAL_METRICS
    assert externals <= used, f"declared external metrics no panel reads: {externals - used}"


def test_promtool_parses_every_query(tmp_path):
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": as_promql(expr)}
                    for i, (_, _, expr) in enumerate(queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    run(tool("promtool"), "check", "rules", str(path))


def test_panels_use_the_data_source_variable_and_do_not_overlap():
    for uid, dashboard in dashboards().items():
        assert [t["name"] for t in dashboard["templating"]["list"]] == ["datasource"]
        taken: set[tuple[int, int]] = set()
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
                assert panel["targets"] and panel["description"], panel["title"]
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
            assert not cells & taken, f"{uid}: {panel['title']} overlaps another panel"
            taken |= cells


def test_compose_grafana_provisions_them():
    datasource = yaml.safe_load((DEPLOY / "compose/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((DEPLOY / "compose/grafana/provisioning/dashboards/portraits.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"] if v.startswith("./"))
    assert mounts["./deploy/compose/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (JSON_DIR / home.rsplit("/", 1)[1]).is_file()
