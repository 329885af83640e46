"""The job error vocabulary (#12): one row per code, and no PortraitError outside it."""

from __future__ import annotations

import pytest

from shared.errors import (
    JOB_ERRORS,
    JobError,
    JobErrorCode,
    JobFailure,
    ModelFilesError,
    NoFace,
    PortraitError,
    UnknownStyle,
    job_error_codes,
)


def test_one_row_per_code_under_its_own_code() -> None:
    assert set(JOB_ERRORS) == set(JobErrorCode)
    for code, row in JOB_ERRORS.items():
        assert isinstance(row, JobError) and row.code is code
        assert row.message and row.message == row.message.strip()
        assert row.status is None or 400 <= row.status < 600


def test_codes_are_the_public_strings() -> None:
    assert job_error_codes() == sorted(code.value for code in JobErrorCode)
    assert all(code.value == code.value.lower() and " " not in code.value for code in JobErrorCode)
    # The codes the worker, the janitor and the engine used to spell out on their own (#12).
    assert {
        "source_expired",
        "source_unreadable",
        "unavailable",
        "timeout",
        "worker_lost",
        "device_unavailable",
        "models_unavailable",
        "engine_error",
    } <= set(job_error_codes())


def test_a_code_gives_its_default_failure() -> None:
    failure = JobErrorCode.SOURCE_EXPIRED.failure
    assert failure == JobFailure(JobErrorCode.SOURCE_EXPIRED, JOB_ERRORS[JobErrorCode.SOURCE_EXPIRED].message)
    assert JobErrorCode.TIMEOUT.message == JobErrorCode.TIMEOUT.info.message
    assert f"failed:{JobErrorCode.TIMEOUT}" == "failed:timeout"  # outcome labels and JSON keep the bare code


def test_portrait_errors_take_code_and_default_message_from_the_vocabulary() -> None:
    assert PortraitError.code is JobErrorCode.ENGINE_ERROR
    assert NoFace().message == JobErrorCode.NO_FACE.message
    specific = UnknownStyle("unknown style 'x'")
    assert specific.message == str(specific) == "unknown style 'x'"
    assert specific.failure == JobFailure(JobErrorCode.UNKNOWN_STYLE, "unknown style 'x'")
    assert NoFace().permanent and not ModelFilesError("gone").permanent


def test_a_literal_code_becomes_the_member_and_an_unknown_one_fails_on_definition() -> None:
    class Literal(PortraitError):
        code = "device_unavailable"  # type: ignore[assignment]  # as a plugin or an older module may write it

    assert Literal.code is JobErrorCode.DEVICE_UNAVAILABLE
    with pytest.raises(ValueError):

        class Unknown(PortraitError):
            code = "not_in_the_vocabulary"  # type: ignore[assignment]  # the mistake this test is about
