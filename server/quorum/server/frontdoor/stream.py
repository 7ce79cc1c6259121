"""``stream: true``: the Router's typed events as an OpenAI SSE response.

Headers are held back until the first piece of the answer arrives, so a request that
fails before answering (no candidate, every provider down, deadline) still gets a plain
HTTP error with the right status, which the SDKs raise as their typed exceptions. After
that, text and tool calls are forwarded as they come. The final chunk carries the
account (``quorum``); a failure mid-way becomes an ``error`` event and no ``[DONE]``.

A restart after text was already sent cannot be expressed in OpenAI's format (a chunk
cannot be taken back), so the Router is asked not to restart (``restart_streams``): a
stream broken mid-way ends with a ``stream_interrupted`` error, without splicing two
answers together or calling (and paying for) a second model.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import structlog
from aiohttp import web

from quorum.server.domain import RouteResult
from quorum.server.errors import QuorumError
from quorum.server.execute.events import Chunk, Event, PlanMade
from quorum.server.frontdoor.account import account_json, plain, route_headers
from quorum.server.frontdoor.errors import (
    HttpError,
    http_error,
    internal_error,
    log_internal_error,
    loggable,
    plain_error,
)
from quorum.server.frontdoor.sse import DONE, ChunkBuilder, frame
from quorum.server.frontdoor.translate import ChatRequest, finish_reason

log = structlog.get_logger("quorum.frontdoor")

StreamItem = Event | RouteResult


def error_response(error: HttpError, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(
        error.body, status=error.status, headers={**error.headers, **(headers or {})}
    )


class _Interrupted(Exception):
    def __init__(self, error: HttpError) -> None:
        super().__init__(error.body["error"]["message"])
        self.error = error


class SseResponder:
    """Writes one streamed completion from the Router's events."""

    def __init__(self, http: web.Request, chat: ChatRequest, created: int) -> None:
        self._http = http
        self._chat = chat
        self._created = created
        self._request_id = chat.route.request_id
        self._response: web.StreamResponse | None = None
        self._builder: ChunkBuilder | None = None
        self._strategy = ""
        self._sent = ""
        self.code = "OK"  # the outcome as a gRPC code name, for the request metrics

    async def _open(self, model: str) -> ChunkBuilder:
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                **route_headers(self._request_id, strategy=self._strategy, model=model),
            },
        )
        await response.prepare(self._http)
        self._response = response
        self._builder = ChunkBuilder(
            self._request_id, self._created, model, self._chat.include_usage
        )
        return self._builder

    async def _write(self, chunks: list[dict[str, Any]]) -> None:
        assert self._response is not None
        for chunk in chunks:
            await self._response.write(frame(chunk))

    async def _on_chunk(self, item: Chunk) -> None:
        builder = self._builder or await self._open(item.model)
        if item.text:
            await self._write(builder.text(item.text))
            self._sent += item.text
        if item.tool_call is not None:
            await self._write(builder.tool_call(item.tool_call))

    async def _finish(self, result: RouteResult) -> None:
        builder = self._builder or await self._open(result.model)
        completion = result.completion
        if not completion.content.startswith(self._sent):
            raise _Interrupted(
                plain_error(
                    503,
                    "the streamed text differs from the final answer; retry the request",
                    "stream_interrupted",
                )
            )
        rest = completion.content[len(self._sent) :]
        if rest:
            await self._write(builder.text(rest))
        for call in completion.tool_calls[builder.tool_calls :]:
            await self._write(builder.tool_call(call))
        extension = account_json(result)
        include_usage = self._chat.include_usage
        await self._write(
            builder.finish(finish_reason(completion), None if include_usage else extension)
        )
        if include_usage:
            await self._write([builder.usage(completion.usage, extension)])
        assert self._response is not None
        await self._response.write(DONE)

    async def _fail(self, error: HttpError, code: str) -> web.StreamResponse:
        self.code = code
        if self._response is None:
            return error_response(error, route_headers(self._request_id))
        await self._response.write(frame(error.body))
        return self._response

    async def respond(self, events: AsyncGenerator[StreamItem, None]) -> web.StreamResponse:
        """Consume ``events`` and answer; closing them cancels upstream work."""
        result: RouteResult | None = None
        try:
            async with contextlib.aclosing(events):
                async for item in events:
                    if isinstance(item, PlanMade):
                        self._strategy = plain(item.plan.strategy)
                    elif isinstance(item, Chunk):
                        await self._on_chunk(item)
                    elif isinstance(item, RouteResult):
                        result = item
            if result is None:
                raise RuntimeError("the event stream ended without a result")
            await self._finish(result)
        except ConnectionResetError:
            log.info("stream_client_gone", request_id=self._request_id)
            self.code = "CANCELLED"
            return self._response or web.Response(status=499)
        except _Interrupted as exc:
            log.warning("stream_interrupted", request_id=self._request_id, error=loggable(str(exc)))
            return await self._fail(exc.error, "UNAVAILABLE")
        except QuorumError as exc:
            log.info("http_failed", request_id=self._request_id, reason=exc.reason)
            return await self._fail(
                http_error(exc, request_id=self._request_id, origins=self._chat.origins),
                exc.code.name,
            )
        except Exception as exc:
            log_internal_error(exc, self._request_id)
            return await self._fail(internal_error(self._request_id), "INTERNAL")
        assert self._response is not None
        return self._response
