"""shared/redis_replies.py (#12): replies of the shape our clients answer pass through typed; any other shape (a
client built with decode_responses, or speaking RESP3) fails at the seam with a TypeError."""

from __future__ import annotations

import pytest

from shared.redis_replies import (
    blob,
    fields,
    hash_fields,
    hash_text,
    members,
    optional_text,
    scored_members,
    stream_entries,
    text,
    xread_entries,
)


def test_single_values() -> None:
    assert blob(b"\x00\xff") == b"\x00\xff"
    assert text(b"caf\xc3\xa9") == "café"
    assert optional_text(None) is None
    assert optional_text(b"x") == "x"


@pytest.mark.parametrize("value", ["decoded", 1, None, bytearray(b"x")])
def test_a_value_that_is_not_bytes_is_refused(value: object) -> None:
    with pytest.raises(TypeError, match="expected bytes"):
        blob(value)


def test_hashes() -> None:
    raw: dict[bytes | str, bytes | str] = {b"state": b"done", b"n": b"2"}
    assert hash_fields(raw) == {b"state": b"done", b"n": b"2"}
    assert hash_text(raw) == {"state": "done", "n": "2"}
    with pytest.raises(TypeError):
        hash_text({"state": "done"})


def test_streams() -> None:
    entries = [(b"1-0", {b"kind": b"created"}), (b"2-0", {b"kind": b"stage"})]
    assert stream_entries(entries) == entries
    assert stream_entries(None) == []
    assert xread_entries(None) == []
    assert xread_entries([[b"portraits:events:a", entries]]) == entries
    with pytest.raises(TypeError, match="RESP2"):
        xread_entries({b"portraits:events:a": [entries]})
    with pytest.raises(TypeError, match="fields"):
        stream_entries([(b"1-0", [b"kind", b"created"])])


def test_sorted_sets() -> None:
    assert members([b"a", b"b"]) == [b"a", b"b"]
    assert scored_members([(b"a", 1.5), (b"b", 2)]) == [(b"a", 1.5), (b"b", 2.0)]
    with pytest.raises(TypeError, match="pair"):
        scored_members([b"a"])


def test_fields_for_writes_are_a_copy() -> None:
    record = {"job_id": "a", "attempts": "1"}
    written = fields(record)
    assert written == record
    assert written is not record
