"""A failed job's message is for the person who sent the photo: our machinery's own text stays in the log (#25)."""

from __future__ import annotations

import pytest

from shared.errors import JOB_ERRORS, SERVICE_SIDE_CODES, JobErrorCode, PortraitError


def _error(code: JobErrorCode, message: str) -> PortraitError:
    cls = type(f"E_{code.value}", (PortraitError,), {"code": code})
    return cls(message)


@pytest.mark.parametrize("code", sorted(SERVICE_SIDE_CODES))
def test_a_service_side_error_records_the_tables_words(code: JobErrorCode) -> None:
    failure = _error(code, "cannot read /srv/models/x.bin (errno 2): run `make models`").failure
    assert failure.code is code
    assert failure.message == JOB_ERRORS[code].message
    assert "/srv" not in failure.message


def test_an_error_about_the_photo_keeps_its_specific_words() -> None:
    failure = _error(JobErrorCode.NO_FACE, "no face was found; the photo is very dark").failure
    assert failure.message == "no face was found; the photo is very dark"
