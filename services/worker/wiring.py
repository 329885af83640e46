"""The worker's Celery app, built around one engine factory: `create_worker_app(settings, engine_factory)`.

Models load once per render process *after* the fork (`worker_process_init`), so CUDA is never initialised in
the parent (pytorch#40403), and each child warms up before it takes a task. The parent serves /metrics.

Production's app module is services/worker/app.py (`celery -A services.worker.app worker`); a test that needs a
render process which misbehaves (tests/fixtures/render_failures/) builds its own app here with its own factory
(process.py says why that is not a setting). Nothing here runs on import: an app module calls this once.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_shutting_down

from services.worker import metrics, process, tasks
from services.worker.lifecycle import WorkerState
from services.worker.plan import resolve_plan
from services.worker.process import EngineFactory, RenderProcess
from shared.logging import configure_logging, get_logger
from shared.queue import make_celery
from shared.settings import Settings

log = get_logger("portraits.worker")


def create_worker_app(settings: Settings, engine_factory: EngineFactory) -> Celery:
    app = make_celery(settings)
    app.conf.update(
        # A replacement render process loads its models before it reports ready; Celery kills any that takes
        # longer than this (4 s by default), so with both cores busy 10 of 12 replacements in a row were killed
        # and nothing was painted for 78 s (issue 9).
        worker_proc_alive_timeout=settings.worker_start_timeout,
        # Celery turns a render process's stdout/stderr into log records of its own by default; our handler
        # writes to stderr, so every job line went into that loop and never reached the output (issue 9: 348
        # jobs, not one "job done" line).
        worker_redirect_stdouts=False,
        # Render processes per worker, from the measured thread and process plan (#11, plan.py): one per core on
        # the CPU, one with CUDA. `--concurrency` on the command line still overrides it.
        worker_concurrency=resolve_plan(settings).processes,
    )
    tasks.register(app, settings, engine_factory)

    # Signal receivers are held strongly (weak=False): they are closures, referenced by nothing else.
    @worker_init.connect(weak=False)
    def _start_metrics_server(**_: object) -> None:
        configure_logging(settings, "worker")
        metrics.serve_metrics(settings.worker_metrics_port, settings.metrics_bind_address)
        log.info("worker metrics served", port=settings.worker_metrics_port)

    @worker_process_init.connect(weak=False)
    def _load_engine(**_: object) -> None:
        configure_logging(settings, "worker")
        metrics.set_state(WorkerState.LOADING)
        # A renderer that fails to load leaves a process that fails the jobs it takes (process.py: `Unloadable`)
        # and reports `failed`, so the liveness probe has it replaced. Raising here would not stop it: Celery
        # logs a signal receiver's exception and the process goes on taking tasks.
        proc = process.install_new(RenderProcess.start(settings, engine_factory))
        metrics.set_state(WorkerState.READY if proc.loaded else WorkerState.FAILED)

    @worker_shutting_down.connect(weak=False)
    def _stopping(**_: object) -> None:
        metrics.set_state(WorkerState.STOPPING)

    @worker_process_shutdown.connect(weak=False)
    def _process_gone(pid: int | None = None, **_: object) -> None:
        metrics.mark_process_dead(pid or os.getpid())

    return app
