"""The metrics catalogue: every Prometheus metric the services export, read from the code's own registries.

    python -m scripts.metrics_catalogue            # rewrite docs/metrics.md
    python -m scripts.metrics_catalogue --check    # fail if docs/metrics.md is out of date (tests/deploy)

`catalogue()` is also what tests/deploy checks the dashboards and alert rules against: a query may only name
a metric listed here (or one of the few external ones it declares).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "metrics.md"

# Where each registry lives, and which service exports what it defines. The lifetime histograms are
# observed by whoever deletes an object: the gateway (erasure), the worker (after rendering), the janitor.
MODULES = {
    "services.gateway.metrics": "gateway",
    "services.worker.metrics": "worker",
    "services.janitor.metrics": "janitor",
    "shared.deletion": "gateway, worker, janitor",
}
ENDPOINTS = {
    "gateway": "`:8080/metrics` (the API's port; gunicorn's workers summed)",
    "worker": "`:9101/metrics` (`PORTRAITS_WORKER_METRICS_PORT`; Celery's prefork processes summed)",
    "janitor": "`:9102/metrics` (`PORTRAITS_JANITOR_METRICS_PORT`)",
}
# Suffixes of the samples each type exposes (the `_created` samples are left out: multi-process mode,
# which the gateway and the worker use, does not export them).
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
    "info": ("_info",),
    "enum": ("",),
}


@dataclass(frozen=True)
class MetricInfo:
    name: str  # the family name as queried (counters with their _total)
    type: str
    labels: tuple[str, ...]
    services: str
    help: str
    buckets: tuple[float, ...] = ()
    samples: tuple[str, ...] = ()  # the series names Prometheus stores
    family: str = ""  # prometheus_client's family name (counters without _total)


def _info(
    family_name: str, kind: str, labels: tuple[str, ...], services: str, help_text: str, buckets: tuple[float, ...] = ()
) -> MetricInfo:
    samples = tuple(family_name + suffix for suffix in SAMPLE_SUFFIXES[kind])
    name = family_name + "_total" if kind == "counter" else family_name
    return MetricInfo(name, kind, labels, services, help_text, buckets, samples, family_name)


def _from_wrapper(metric: MetricWrapperBase, services: str) -> MetricInfo:
    # describe() is typed as an Iterable; a wrapper's is a list of exactly one family (#12: next() for mypy).
    family = next(iter(metric.describe()))
    buckets = tuple(b for b in getattr(metric, "_upper_bounds", ()) if b != float("inf"))
    return _info(family.name, family.type, tuple(metric._labelnames), services, family.documentation, buckets)


def _scrape_time_collectors() -> list[MetricInfo]:
    """Metrics made at scrape time by custom collectors (not in the default registry)."""
    from services.gateway.metrics import QueueDepthCollector

    return [
        _info(f.name, f.type, (), "gateway", f.documentation)
        for f in QueueDepthCollector(lambda: 0, lambda: 0).collect()
    ]


def catalogue() -> list[MetricInfo]:
    """Every project metric, sorted by name. Fails if the default registry holds one no module claims."""
    found: dict[str, MetricInfo] = {}
    for module_name, services in MODULES.items():
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                info = _from_wrapper(value, services)
                found[info.name] = info
    for info in _scrape_time_collectors():
        found[info.name] = info
    claimed = {info.family for info in found.values()}
    unclaimed = sorted(
        family.name
        for family in REGISTRY.collect()
        if family.name not in claimed and not family.name.startswith(("process_", "python_"))
    )
    if unclaimed:
        raise RuntimeError(f"metrics in the registry that no module in MODULES defines: {unclaimed}")
    return sorted(found.values(), key=lambda info: info.name)


def label_values() -> dict[str, tuple[str, ...]]:
    """Labels whose values the code enumerates."""
    from services.worker.lifecycle import WorkerState
    from shared.audit import Deleter, ObjectKind

    return {"state": tuple(WorkerState), "deleted_by": tuple(Deleter), "kind": tuple(ObjectKind)}


def _buckets(values: tuple[float, ...]) -> str:
    return ", ".join(str(int(v)) if v == int(v) else f"{v:g}" for v in values)


def _labels(labels: tuple[str, ...], known: dict[str, tuple[str, ...]]) -> str:
    if not labels:
        return "—"
    return ", ".join(f"`{label}` ({', '.join(known[label])})" if label in known else f"`{label}`" for label in labels)


def render(metrics: list[MetricInfo]) -> str:
    lines = [
        "# Metrics",
        "",
        "Every Prometheus metric the services export. Generated from the code's registries by",
        "`python -m scripts.metrics_catalogue` (a test keeps it current): do not edit by hand.",
        "",
        "Scraped at:",
        "",
        *(f"- {service}: {where}" for service, where in ENDPOINTS.items()),
        "",
        "Counters are queried with their `_total` suffix; histograms as `_bucket` (with `le`), `_sum` and",
        "`_count`. Request routes are URL rules (`/v1/portraits/<id>`), never raw paths: ids are not labels.",
        "",
        "| metric | type | labels | service | meaning |",
        "|---|---|---|---|---|",
    ]
    known = label_values()
    for m in metrics:
        labels = _labels(m.labels, known)
        meaning = m.help.replace("|", "\\|").replace("<", "&lt;")
        if m.buckets:
            meaning += f" Buckets: {_buckets(m.buckets)}."
        lines.append(f"| `{m.name}` | {m.type} | {labels} | {m.services} | {meaning} |")
    lines += [
        "",
        "The janitor, a single process, also exports the Prometheus client's standard `process_*` and",
        "`python_*` metrics; the gateway and the worker aggregate several processes and do not.",
        "GPU metrics come from NVIDIA's DCGM exporter (`DCGM_FI_DEV_*`), where it runs.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate docs/metrics.md from the services' registries.")
    parser.add_argument("--check", action="store_true", help="fail if docs/metrics.md is out of date")
    args = parser.parse_args(argv)
    text = render(catalogue())
    if args.check:
        if not DOC.is_file() or DOC.read_text() != text:
            print(f"{DOC.relative_to(ROOT)} is out of date: run python -m scripts.metrics_catalogue", file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
