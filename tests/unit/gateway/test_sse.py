"""Server-sent events as the gateway writes them (services/gateway/events.py) and the CLI reads them (#10)."""

from __future__ import annotations

import pytest

from services.client import ServerEvent, parse_sse
from services.gateway.sse import HEARTBEAT, SseEvent, SseEventName, format_event
from shared.events import is_event_id


def test_an_event_is_id_event_and_one_data_line() -> None:
    message = format_event(SseEvent("stage", {"stage": "detect"}, "1718000000123-0"))
    assert message == b'id: 1718000000123-0\nevent: stage\ndata: {"stage":"detect"}\n\n'


def test_an_event_without_id_has_no_id_line() -> None:
    assert (
        format_event(SseEvent("queue_position", {"queue_position": 3}))
        == b'event: queue_position\ndata: {"queue_position":3}\n\n'
    )


def test_line_breaks_in_values_stay_inside_the_json() -> None:
    # A reason with newlines or U+2028 must not split the data line (readers split lines on CR and LF).
    message = format_event(SseEvent("done", {"reason": "one\ntwo\r\u2028three \u00e9"}, "1-0"))
    assert message.count(b"\n") == 4 and b"\r" not in message
    (event,) = parse_sse(message.decode().split("\n"))
    assert event.json() == {"reason": "one\ntwo\r\u2028three \u00e9"}


def test_fields_with_line_breaks_are_refused() -> None:
    with pytest.raises(ValueError):
        format_event(SseEvent("stage\nevent: done", {}))
    with pytest.raises(ValueError):
        format_event(SseEvent("stage", {}, "1-0\ndata: x"))


def test_the_client_parser_reads_what_the_gateway_writes() -> None:
    text = (
        "retry: 2000\n\n"
        + format_event(SseEvent("queue_position", {"queue_position": 0})).decode()
        + HEARTBEAT.decode()
        + format_event(SseEvent("deleted", {}, "5-1")).decode()
    )
    assert list(parse_sse(text.split("\n"))) == [
        ServerEvent("queue_position", '{"queue_position":0}', None),
        ServerEvent("deleted", "{}", "5-1"),
    ]


def test_the_client_parser_follows_the_standard() -> None:
    # Multi-line data joins with LF; one leading space is stripped; a field without a colon is a name alone;
    # an event with no data is not dispatched; the default event name is `message`.
    lines = ["data:a", "data:  b", "", "event: ping", "", "id: 7", "data", "data: c", ""]
    assert list(parse_sse(lines)) == [ServerEvent("message", "a\n b"), ServerEvent("message", "\nc", "7")]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("1718000000123-0", True),
        ("0-0", True),
        ("12", False),
        ("a-1", False),
        ("1-2-3", False),
        ("", False),
        # `re.match` with `$` let these by (#25): a trailing newline, and digits of other scripts.
        ("1718000000123-0\n", False),
        ("\u0661-\u0660", False),
    ],
)
def test_event_ids_are_stream_ids(value: str, valid: bool) -> None:
    assert is_event_id(value) is valid


def test_the_openapi_document_lists_exactly_the_events_the_stream_sends():
    from services.gateway.openapi import document

    events = document()["paths"]["/v1/portraits/{id}/events"]["get"]["x-events"]
    assert set(events) == {name.value for name in SseEventName}
