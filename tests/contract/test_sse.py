"""The SSE reader every streaming adapter shares: framing rules of the event-stream format."""

from __future__ import annotations

import pytest

from quorum.server.providers.sse import SseEvent, SseParser, error_message


def parse(*chunks: bytes, close: bool = True) -> list[SseEvent]:
    parser = SseParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    last = parser.close() if close else None
    return [*events, last] if last is not None else events


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_line_endings(end: bytes) -> None:
    raw = b"event: a" + end + b"data: 1" + end + end + b"data: 2" + end + end
    assert parse(raw) == [SseEvent("a", "1"), SseEvent("", "2")]


def test_events_split_anywhere_across_chunks() -> None:
    raw = b'event: delta\r\ndata: {"x": 1}\r\n\r\ndata: [DONE]\r\n\r\n'
    for cut in range(len(raw) + 1):
        assert parse(raw[:cut], raw[cut:]) == [
            SseEvent("delta", '{"x": 1}'),
            SseEvent("", "[DONE]"),
        ], cut


def test_multi_line_data_comments_and_unknown_fields() -> None:
    raw = b": keep-alive\nid: 7\nretry: 10\ndata: first\ndata:second\n\n"
    assert parse(raw) == [SseEvent("", "first\nsecond")]


def test_last_event_without_blank_line_is_dispatched_at_close() -> None:
    assert parse(b"data: tail", close=True) == [SseEvent("", "tail")]
    assert parse(b"data: tail", close=False) == []


def test_large_single_line() -> None:
    payload = "x" * 300_000
    assert parse(b"data: " + payload.encode() + b"\n\n") == [SseEvent("", payload)]


def test_pending_counts_an_event_not_yet_complete() -> None:
    # What the reader holds of an event still coming: the stream is cut off past a limit.
    parser = SseParser()
    assert list(parser.feed(b"data: " + b"x" * 1000 + b"\ndata: " + b"y" * 500)) == []
    assert parser.pending == 1000 + len(b"data: ") + 500
    assert list(parser.feed(b"\n\n")) == [SseEvent("", "x" * 1000 + "\n" + "y" * 500)]
    assert parser.pending == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"error": {"message": "bad key", "type": "invalid_request_error"}}',
            "bad key (invalid_request_error)",
        ),
        (
            b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
            "Overloaded (overloaded_error)",
        ),
        (
            b'{"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}',
            "not found (NOT_FOUND)",
        ),
        (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        (b'{"error": "plain"}', "plain"),
    ],
)
def test_error_message_of_each_vendor_body(body: bytes, message: str) -> None:
    assert error_message(body) == message


def test_an_event_line_without_data_dispatches_nothing() -> None:
    # The standard: an empty data buffer dispatches nothing, and resets the event type.
    assert parse(b"event: ping\n\ndata: 1\n\n") == [SseEvent("", "1")]
    assert parse(b"event: ping\n\n", b"event: ping") == []


def test_empty_data_lines_are_data_as_the_standard_says() -> None:
    # "data:" appends an empty line: the event is dispatched with empty data (the shared
    # reader, not the parser, skips it: see test_malformed_fields).
    assert parse(b"data:\n\n") == [SseEvent("", "")]
    assert parse(b"data:\ndata:\ndata: foo\n\n") == [SseEvent("", "\n\nfoo")]
