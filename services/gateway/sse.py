"""Server-sent events on the wire: the event names (one vocabulary for the stream, the OpenAPI document and
tests, #23) and the message format."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

HEARTBEAT = b": keep-alive\n\n"


class SseEventName(StrEnum):
    STAGE = "stage"
    QUEUE_POSITION = "queue_position"
    DONE = "done"
    FAILED = "failed"
    DELETED = "deleted"


@dataclass(frozen=True)
class SseEvent:
    event: SseEventName
    data: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


def format_event(event: SseEvent) -> bytes:
    """One SSE message. The JSON is ASCII-only (`ensure_ascii`), so it is one line: no CR, LF or U+2028 that a
    client could split it on."""
    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=True)
    for value in (event.event, event.id or "", data):
        if "\n" in value or "\r" in value:
            raise ValueError("an SSE field cannot hold a line break")
    head = f"id: {event.id}\n" if event.id else ""
    return f"{head}event: {event.event}\ndata: {data}\n\n".encode()
