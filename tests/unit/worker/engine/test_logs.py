"""The engine logs key=value events (#12): fields in the services' JSON lines, and nothing on an unconfigured stdout."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from services.worker.engine.timing import StageTimer
from shared.logging import configure_logging
from shared.settings import get_settings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config, context = structlog.get_config(), structlog.contextvars.get_contextvars()
    yield
    root.handlers[:], root.level = handlers, level
    structlog.configure(**config)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**context)


def test_stage_timings_are_fields_of_the_services_json_lines(restore_logging: None, capsys) -> None:
    configure_logging(get_settings().model_copy(update={"log_json": True, "log_level": "debug"}), "worker")
    timer = StageTimer(batch_size=3)
    with structlog.contextvars.bound_contextvars(job_id="job-1"), timer.stage("detect"):
        pass
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    event = next(line for line in lines if line.get("stage") == "detect")
    assert event["message"] == "stage timed"
    assert event["batch_size"] == 3 and event["seconds"] == timer.durations["detect"]
    assert event["job_id"] == "job-1" and event["service"] == "worker" and event["level"] == "debug"


def test_stage_lines_stay_out_of_info_logs(restore_logging: None, capsys) -> None:
    # Six lines per job between the render's stages (#11): the "job done" line carries the timings instead.
    configure_logging(get_settings().model_copy(update={"log_json": True, "log_level": "info"}), "worker")
    with StageTimer().stage("detect"):
        pass
    assert "stage timed" not in capsys.readouterr().err


def test_unconfigured_the_engine_keeps_stdout_clean(capsys) -> None:
    # The CLI and the benchmarks print their results on stdout and configure no logging.
    with StageTimer().stage("decode"):
        pass
    assert capsys.readouterr().out == ""
