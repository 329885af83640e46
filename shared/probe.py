"""Probes for processes whose only HTTP surface is /metrics (worker, janitor): read the local metrics
endpoint and decide. Used as Kubernetes exec probes, e.g. `python -m services.worker.probe`."""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def read_metrics(port: int, timeout: float = 3.0) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def run_probe(port: int, verdict: Callable[[Samples], str | None]) -> int:
    """Exit status for an exec probe: 0 healthy; 1 with the reason on stderr."""
    try:
        problem = verdict(read_metrics(port))
    except OSError as exc:
        problem = f"metrics endpoint unreachable: {exc}"
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0
