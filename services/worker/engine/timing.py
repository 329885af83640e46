"""Per-stage wall-clock timings, logged as they happen and returned with every portrait."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from services.worker.engine.logs import get_logger

log = get_logger()


class StageTimer:
    def __init__(
        self,
        synchronize: Callable[[], None] = lambda: None,
        batch_size: int = 1,
        on_enter: Callable[[str], None] | None = None,
    ) -> None:
        self._synchronize = synchronize
        self._on_enter = on_enter  # e.g. the worker recording the job's current stage
        self.batch_size = batch_size
        self.durations: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self._on_enter is not None:
            self._on_enter(name)
        started = time.perf_counter()
        try:
            yield
        finally:
            self._synchronize()
            elapsed = time.perf_counter() - started
            self.durations[name] = self.durations.get(name, 0.0) + elapsed
            # DEBUG: six INFO lines per job (~50 us each to format, alone) ran between the render's stages (#11); the
            # timings are on the worker's "job done" line, the job record and the stage histogram.
            log.debug("stage timed", stage=name, seconds=elapsed, batch_size=self.batch_size)
