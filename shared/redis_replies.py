"""Redis replies narrowed to what our clients answer (#12).

redis-py types every reply as the union of what any client could answer: `bytes | str` (with or without
`decode_responses`), and for streams and sorted sets both the RESP2 and the RESP3 shapes. Every client in this
tree is built without `decode_responses` and speaks RESP2 (redis-py's default), so a reply is bytes, a stream
entry is `(id, {field: value})` and a scored member is `(member, score)`. These functions check that at the seam,
once, and give the code above them the one type it handles; a reply of another shape (a client built otherwise)
raises TypeError here rather than an AttributeError deeper down.

Writes go the other way: a hash or stream entry built as `dict[str, str]` is not a `dict[FieldT, EncodableT]`
to mypy (dict keys are invariant), so `fields()` copies it into the type redis-py's `hset`/`xadd` take.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from redis.typing import EncodableT, FieldT

StreamEntry = tuple[bytes, dict[bytes, bytes]]


def blob(value: object) -> bytes:
    """A single reply value: bytes, as a client without `decode_responses` answers."""
    if not isinstance(value, bytes):
        raise TypeError(f"expected bytes from Redis, got {type(value).__name__} (a client with decode_responses?)")
    return value


def text(value: object) -> str:
    """A single reply value, decoded (UTF-8, as redis-py encodes what we write)."""
    return blob(value).decode()


def optional_text(value: object) -> str | None:
    """`text`, or None for a missing key (GET, HGET)."""
    return None if value is None else text(value)


def hash_fields(raw: Mapping[bytes | str, bytes | str]) -> dict[bytes, bytes]:
    """An HGETALL reply (or a stream entry's fields) as bytes → bytes."""
    return {blob(name): blob(value) for name, value in raw.items()}


def hash_text(raw: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    """An HGETALL reply (or a stream entry's fields), decoded."""
    return {text(name): text(value) for name, value in raw.items()}


def stream_entries(reply: Iterable[tuple[object, object]] | None) -> list[StreamEntry]:
    """An XRANGE/XREVRANGE reply (None or empty for a missing stream): `(entry id, fields)` pairs."""
    entries: list[StreamEntry] = []
    for entry_id, fields in reply or []:
        if not isinstance(fields, dict):
            raise TypeError(f"expected a stream entry's fields as a dict, got {type(fields).__name__}")
        entries.append((blob(entry_id), hash_fields(fields)))
    return entries


def xread_entries(reply: object) -> list[StreamEntry]:
    """An XREAD reply (RESP2: a list of `[stream, entries]`, or None when the wait ran out), streams flattened in
    the order Redis answered them."""
    if reply is None:
        return []
    if not isinstance(reply, list):
        raise TypeError(f"expected an XREAD reply as a RESP2 list, got {type(reply).__name__}")
    return [entry for _stream, entries in reply for entry in stream_entries(entries)]


def members(reply: Iterable[object]) -> list[bytes]:
    """A ZRANGE-family reply without scores."""
    return [blob(member) for member in reply]


def scored_members(reply: Iterable[object]) -> list[tuple[bytes, float]]:
    """A ZRANGE-family reply `withscores=True`: `(member, score)` pairs."""
    pairs: list[tuple[bytes, float]] = []
    for pair in reply:
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and isinstance(pair[1], float | int)):
            raise TypeError(f"expected a (member, score) pair from Redis, got {pair!r}")
        pairs.append((blob(pair[0]), float(pair[1])))
    return pairs


def fields(values: Mapping[str, str]) -> dict[FieldT, EncodableT]:
    """A hash or stream entry built as text, in the type redis-py's `hset(mapping=)` and `xadd` take."""
    return dict(values.items())
