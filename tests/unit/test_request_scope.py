"""The request id log scope (left from another context, as an abandoned stream is) and
JSON log lines that must be written whatever text they carry."""

from __future__ import annotations

import asyncio
import json

from quorum.server.observability.logs import _json_bytes, _request_id, request_scope


async def test_a_scope_left_from_another_context_does_not_raise() -> None:
    # grpc.aio may close a RouteStream generator from another task than the one that
    # ran it; raising there used to turn the close into an internal error, leaving the
    # routing work (and its upstream call) running.
    scope = request_scope("req-1")

    async def enter() -> None:
        scope.__enter__()
        assert _request_id.get() == "req-1"

    await asyncio.create_task(enter())  # entered in the task's own copy of the context
    scope.__exit__(None, None, None)
    assert _request_id.get() == ""


def test_a_scope_tags_and_untags() -> None:
    with request_scope("req-2"):
        assert _request_id.get() == "req-2"
    assert _request_id.get() == ""


def test_json_logs_carry_text_utf8_cannot() -> None:
    # A lone surrogate reaches a log line (a caller's odd input echoed in an error):
    # the line is written, escaped, never a crash of the logging call.
    line = _json_bytes({"event": "odd", "text": "x\ud800"})
    assert json.loads(line)["text"] == "x\ud800"
    assert json.loads(_json_bytes({"event": "plain"})) == {"event": "plain"}
