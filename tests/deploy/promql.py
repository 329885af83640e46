"""PromQL helpers for the checks of alert rules and dashboards: parse, and list the metric names a query
reads, to compare with what the services export (scripts/metrics_catalogue.py)."""

from __future__ import annotations

import re
from functools import cache

from tests.deploy.helpers import DEPLOY, load_module, python_module

# Grafana's variables, replaced by what they stand for before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
# Series Prometheus makes itself.
PROMETHEUS_METRICS = {"up", "scrape_duration_seconds", "ALERTS"}


def as_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names a query selects (it fails to parse → ValueError from the parser)."""
    promql_parser = python_module("promql_parser")
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    names.add(matcher.value)

    promql_parser.walk(promql_parser.parse(as_promql(expr)), pre_visit=visit)
    assert names, f"no metric in {expr!r}"
    return names


def dashboards_module():
    return load_module(DEPLOY / "dashboards" / "portraits_dashboards.py", "portraits_dashboards")


@cache
def allowed_metrics() -> frozenset[str]:
    """Every series name the services export, plus Prometheus's own and the dashboards' declared externals."""
    from scripts.metrics_catalogue import catalogue

    exported = {sample for info in catalogue() for sample in info.samples}
    assert all(re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name) for name in exported)
    return frozenset(exported | PROMETHEUS_METRICS | dashboards_module().EXTERNAL_METRICS)
