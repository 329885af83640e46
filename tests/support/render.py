"""The worker's render task, run in-process (Celery's eager mode) on a render process a test built (#12: the
task reads its process from services/worker/process.py; tests install theirs instead of patching globals)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from services.worker import process, tasks
from services.worker.outcomes import PortraitRenderer
from services.worker.process import RenderProcess
from shared.queue import make_celery
from shared.settings import Settings


def _no_engine(settings: Settings) -> PortraitRenderer:
    raise AssertionError("the test installs its own render process; none is started")


@contextmanager
def eager_render_task(proc: RenderProcess) -> Iterator[tasks.RenderTask]:
    """The render task on an app of its own in eager mode (retries run synchronously), with `proc` installed as
    this process's render process until the block ends."""
    app = make_celery(proc.settings)
    app.conf.task_always_eager = True
    task = tasks.register(app, proc.settings, _no_engine)
    previous = process.install(proc)
    try:
        yield task
    finally:
        process.install(previous)
