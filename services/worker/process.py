"""One render process's state, as one typed object (#12).

A `RenderProcess` is built once per render process, after the fork (`worker_process_init`, services/worker/
wiring.py), and installed here; the task reads it with `current()`, and a test installs its own.

Which renderer a process loads is the `engine_factory` the Celery app was built with (`create_worker_app`):
production's app module (services/worker/app.py) passes `load_portrait_engine`, and nothing else can change it —
no setting or environment variable picks a renderer, so no deployment can load another one by accident. A test
that needs a renderer which misbehaves at the process level starts a real worker on an app module of its own
(tests/fixtures/render_failures/), built by the same function with its own factory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, NoReturn

from services.worker.outcomes import PortraitRenderer
from services.worker.plan import resolve_plan
from services.worker.runner import JobRunner
from shared.backends import Backends
from shared.capacity import CapacityBoard
from shared.errors import ModelFilesError, PortraitError
from shared.leases import JobLeases
from shared.logging import get_logger
from shared.settings import Settings
from shared.webhooks import WebhookOutbox

if TYPE_CHECKING:
    from services.worker.engine.pipeline import Portrait, RenderRequest

log = get_logger("portraits.worker")

# Builds the renderer of a render process from its settings: verified models loaded and warmed up.
EngineFactory = Callable[[Settings], PortraitRenderer]

# A task that starts this soon after the previous one ended found work waiting: the gap is hand-off, not idleness.
BACK_TO_BACK_SECONDS = 0.25


def load_portrait_engine(settings: Settings) -> PortraitRenderer:
    """Production's renderer: the engine, with the thread plan's torch threads (#11: plan.py)."""
    # torch underneath: imported here, after the fork, so the Celery parent never initialises it (pytorch#40403).
    from services.worker.engine.config import EngineConfig
    from services.worker.engine.pipeline import PortraitEngine

    threads = resolve_plan(settings).torch_threads
    if threads is not None and not settings.torch_threads:
        settings = settings.model_copy(update={"torch_threads": threads})  # the engine sets it
    return PortraitEngine(EngineConfig.from_settings(settings))


class Unloadable:
    """The renderer of a process whose renderer failed to load: every render fails with the load error.

    Raising in the task instead would let Celery acknowledge the message and leave the job `queued` until its source
    expired (tests/fixtures/render_failures/fails_to_load.py). So the job fails at once with the load error's code
    (`models_unavailable`, `device_unavailable`: "please try again later"), its source is erased and its webhook
    sent, while the process reports `failed` to the liveness probe so it gets replaced."""

    def __init__(self, error: PortraitError) -> None:
        self.error = error

    def render(
        self,
        data: bytes,
        style: str = "auto",
        strength: float | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> NoReturn:
        raise self.error

    def render_batch(
        self, requests: Sequence[RenderRequest], progress: Callable[[str], None] | None = None
    ) -> list[Portrait | PortraitError]:
        return [self.error for _ in requests]


def load_error(exc: Exception) -> PortraitError:
    """What a job taken by a process whose renderer failed to load with `exc` fails with."""
    return exc if isinstance(exc, PortraitError) else ModelFilesError()


class HandOffClock:
    """When this process's previous task ended, to count a back-to-back task's hand-off as its cost."""

    def __init__(self) -> None:
        self._last_end: float | None = None  # monotonic

    def busy_seconds(self, started: float, ended: float) -> float:
        """What this task cost the process's throughput: its own time, plus the hand-off from the previous task
        when it followed straight on (Celery's delivery, the metrics, the previous report). Counting only the
        task's own time made the gateways' estimate 10 % optimistic: 205 of a 300-upload burst were accepted and
        15 of them failed `source_expired` (#11). A longer gap is idleness, not cost."""
        previous, self._last_end = self._last_end, ended
        if previous is not None and 0 <= started - previous <= BACK_TO_BACK_SECONDS:
            return ended - previous
        return ended - started


@dataclass(frozen=True)
class RenderProcess:
    """Everything one render process holds: its settings, backends, renderer, the runner over them, its entry on
    the gateways' capacity board (#11) and its hand-off clock."""

    settings: Settings
    backends: Backends
    engine: PortraitRenderer
    runner: JobRunner
    capacity: CapacityBoard | None  # None: this process reports nothing (a test that does not look)
    clock: HandOffClock = field(default_factory=HandOffClock)
    loaded: bool = True  # False: the renderer failed to load, `engine` is `Unloadable`

    @classmethod
    def start(cls, settings: Settings, engine_factory: EngineFactory) -> RenderProcess:
        """Connect the backends and load the renderer (which may take a while). If the renderer cannot be
        loaded, the process is still built, around `Unloadable` (`loaded` False), and the error is logged."""
        backends = Backends.connect(settings)
        capacity = CapacityBoard(backends.redis)
        try:
            engine = engine_factory(settings)
        except Exception as exc:
            log.exception("engine failed to load; this process will fail the jobs it takes and report failed")
            return replace(cls.assemble(backends, Unloadable(load_error(exc)), capacity=None), loaded=False)
        return cls.assemble(backends, engine, capacity=capacity)

    @classmethod
    def assemble(
        cls, backends: Backends, engine: PortraitRenderer, *, capacity: CapacityBoard | None = None
    ) -> RenderProcess:
        """A process around a ready renderer (tests hand in theirs, and backends over a flaky store)."""
        settings = backends.settings
        runner = JobRunner(
            settings,
            backends.jobs,
            backends.storage,
            backends.keys,
            backends.eraser,
            engine,
            JobLeases(backends.redis, settings.job_lease_seconds),
            webhooks=WebhookOutbox(backends.redis),
        )
        return cls(settings=settings, backends=backends, engine=engine, runner=runner, capacity=capacity)


_current: RenderProcess | None = None


def install(process: RenderProcess | None) -> RenderProcess | None:
    """Make `process` this process's (None: none); returns the one it replaced, for a test to put back."""
    global _current
    previous, _current = _current, process
    return previous


def install_new(process: RenderProcess) -> RenderProcess:
    """Install a freshly started process and return it."""
    install(process)
    return process


def current() -> RenderProcess | None:
    return _current
