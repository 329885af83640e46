"""Structured logs for every service: one JSON object per line, with the job id bound where there is one.

Never log client addresses, file names or image bytes: log calls pass ids, codes, sizes and timings only.
"""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import Processor

from shared.settings import Settings


def configure_logging(settings: Settings, service: str) -> None:
    renderer = structlog.processors.JSONRenderer() if settings.log_json else structlog.dev.ConsoleRenderer(colors=False)
    shared_processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,  # tracebacks as text, not a repr of exc_info
    ]
    if settings.log_json:
        shared_processors.append(structlog.processors.EventRenamer("message"))
    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Records from the standard library (Celery, gunicorn, and the engine's structlog events, which
    # services/worker/engine/logs.py hands to the standard library; ExtraAdder makes their keys fields) get the
    # same shape.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared_processors, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
