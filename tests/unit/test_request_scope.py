"""The request id log scope, left from another context as an abandoned stream is."""

from __future__ import annotations

import asyncio

from quorum.server.observability.logs import _request_id, request_scope


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
