"""Job ids: what `is_job_id` lets through to Redis."""

from __future__ import annotations

import pytest

from shared.ids import is_job_id, new_job_id


def test_a_new_id_is_an_id() -> None:
    assert is_job_id(new_job_id())


@pytest.mark.parametrize(
    "value",
    [
        "A" * 31,
        "A" * 33,
        "A" * 31 + ".",
        "",
        # `re.match` with `$` accepted a trailing newline (#25): the id would reach Redis keys and log lines.
        "A" * 32 + "\n",
        "\n" + "A" * 32,
    ],
    ids=repr,
)
def test_anything_but_32_url_safe_characters_is_refused(value: str) -> None:
    assert not is_job_id(value)
