"""The engine's structured logger: key=value events like every other service's, with no settings behind it (#12).

`shared.logging.get_logger` would do inside a service, but the engine also runs where nobody configured structlog
(the CLI, benchmarks, tests), and unconfigured structlog prints every event to stdout — into the CLI's output
and the benchmarks' JSON lines. So the engine's loggers hand their events to the standard library logger of the
same name instead: unconfigured, that drops info events as the engine always did; under
`shared.logging.configure_logging`, its formatter gives them the service's shape (JSON, timestamp, bound job id,
every key as a field).
"""

from __future__ import annotations

import logging

import structlog


def get_logger(name: str = "portraits.engine") -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.wrap_logger(
        logging.getLogger(name),
        wrapper_class=structlog.stdlib.BoundLogger,
        # the level check first, so a dropped event costs no formatting; keys travel as the record's extras
        processors=[structlog.stdlib.filter_by_level, structlog.stdlib.render_to_log_kwargs],
    )
    return logger
