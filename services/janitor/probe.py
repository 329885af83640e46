"""`python -m services.janitor.probe`: the janitor is alive while it keeps sweeping — its last successful
sweep is at most three intervals (plus a margin for one slow sweep) old."""

from __future__ import annotations

import sys
import time

from shared.probe import Samples, run_probe
from shared.settings import Settings, get_settings

MARGIN_SECONDS = 30.0


def verdict(samples: Samples, settings: Settings, now: float) -> str | None:
    last = samples.get(("portraits_janitor_last_successful_sweep_timestamp_seconds", ()), 0.0)
    allowed = 3 * settings.janitor_interval_seconds + MARGIN_SECONDS
    if now - last > allowed:
        return f"no successful sweep for {now - last:.0f} s (allowed {allowed:.0f} s)"
    return None


if __name__ == "__main__":
    settings = get_settings()
    sys.exit(run_probe(settings.janitor_metrics_port, lambda s: verdict(s, settings, time.time())))
