"""Server-sent events in OpenAI's ``chat.completion.chunk`` format.

Each event is one ``data: <json>`` line and a blank line; the stream ends with
``data: [DONE]``. A failure after the first byte is an ``error`` event (the SDKs raise it)
and no ``[DONE]``, so a broken stream is never mistaken for a complete one. With
``stream_options.include_usage`` every chunk carries ``"usage": null`` and a last chunk
with no choices carries the usage, as OpenAI does.
"""

from __future__ import annotations

from typing import Any

import orjson

from quorum.server.domain import ToolCall, Usage
from quorum.server.frontdoor.translate import completion_id, tool_call_json, usage_json

DONE = b"data: [DONE]\n\n"


def frame(payload: dict[str, Any]) -> bytes:
    """One SSE event carrying ``payload`` as compact JSON."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class ChunkBuilder:
    """Builds the chunks of one streamed completion."""

    def __init__(self, request_id: str, created: int, model: str, include_usage: bool) -> None:
        self._id = completion_id(request_id)
        self._created = created
        self._model = model
        self._include_usage = include_usage
        self._opened = False
        self.tool_calls = 0

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def text(self, text: str) -> list[dict[str, Any]]:
        """A content delta, after the role chunk that opens the message."""
        chunks = []
        if not self._opened:
            self._opened = True
            chunks.append(self._chunk({"role": "assistant", "content": ""}))
        chunks.append(self._chunk({"content": text}))
        return chunks

    def tool_call(self, call: ToolCall) -> list[dict[str, Any]]:
        """A whole tool call as one delta (the role opens the message if it is first)."""
        entry = {"index": self.tool_calls, **tool_call_json(call)}
        self.tool_calls += 1
        delta: dict[str, Any] = {"tool_calls": [entry]}
        if not self._opened:
            self._opened = True
            delta = {"role": "assistant", "content": None, **delta}
        return [self._chunk(delta)]

    def finish(self, reason: str, extension: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The chunk with the finish reason (and the account, when no usage chunk follows)."""
        chunks = [] if self._opened else self.text("")[:1]
        last = self._chunk({}, reason)
        if extension is not None:
            last["quorum"] = extension
        chunks.append(last)
        return chunks

    def usage(self, usage: Usage, extension: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "system_fingerprint": None,
            "choices": [],
            "usage": usage_json(usage),
            "quorum": extension,
        }
