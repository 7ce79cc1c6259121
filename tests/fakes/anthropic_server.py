"""A fake Anthropic Messages API (``POST /v1/messages``).

Speaks the wire format of ``api.anthropic.com``: ``message`` objects with content
blocks, the SSE event sequence ``message_start``, ``content_block_start`` /
``content_block_delta`` (``text_delta``, ``input_json_delta``) / ``content_block_stop``,
``ping``, ``message_delta`` (stop reason and usage) and ``message_stop``, ``error``
events, and ``{"type": "error", "error": {"type", "message"}}`` bodies (529 is
``overloaded_error``). Like the API it requires ``anthropic-version`` and a key, in
``x-api-key`` or (as recent SDKs send it) ``Authorization: Bearer``.

Run alone: ``python -m tests.fakes.anthropic_server --port 0`` prints the base URL.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes import common
from tests.fakes.common import Answer, BadRequest, Parsed, Turn

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "model: not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}
_MEDIA_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
# The tool a client (Quorum's adapter among them) forces to get its answer as JSON: a
# forced call to it is answered with JSON_ANSWER, one to any other tool with tool arguments.
JSON_ANSWER_TOOL = "json_response"


_CALLS = itertools.count()  # tool-call ids, unique for the server's life


class AnthropicVendor:
    name = "anthropic"
    api_prefix = ""

    def routes(self, handle: Callable[..., Any]) -> list[web.RouteDef]:
        async def messages(request: web.Request) -> web.StreamResponse:
            response: web.StreamResponse = await handle(request)
            return response

        return [web.post("/v1/messages", messages)]

    def check_auth(self, request: web.Request) -> BadRequest | None:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not (request.headers.get("x-api-key") or bearer):
            return BadRequest("x-api-key header is required", 401)
        if not request.headers.get("anthropic-version"):
            return BadRequest("anthropic-version: header is required")
        return None

    def parse(self, body: Any, model: str | None, stream: bool) -> Parsed:
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        for key in ("model", "max_tokens", "messages"):
            if key not in body:
                raise BadRequest(f"{key}: Field required")
        if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
            raise BadRequest("max_tokens: Input should be a valid integer greater than 0")
        parsed = Parsed(model=str(body["model"]), stream=bool(body.get("stream")))
        parsed.system = _system(body.get("system"))
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: at least one message is required")
        pending: set[str] = set()
        for index, message in enumerate(messages):
            pending = _message(parsed, message, index, pending)
        for index, tool in enumerate(body.get("tools") or ()):
            if not tool.get("name") or not isinstance(tool.get("input_schema"), dict):
                raise BadRequest(f"tools.{index}.input_schema: Field required")
            if tool["input_schema"].get("type") != "object":
                raise BadRequest(f"tools.{index}.input_schema.type: Input should be 'object'")
            if tool["name"] in parsed.tools:
                raise BadRequest("tools: Tool names must be unique.")
            parsed.tools.append(str(tool["name"]))
        choice = body.get("tool_choice") or {"type": "auto"}
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            raise BadRequest("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
        if choice["type"] in ("any", "none"):
            parsed.tool_choice = "required" if choice["type"] == "any" else "none"
        if choice["type"] == "tool":
            if choice.get("name") not in parsed.tools:
                raise BadRequest(f"tool_choice: tool {choice.get('name')!r} is not in tools")
            parsed.forced_tool = str(choice["name"])
            if choice["name"] == JSON_ANSWER_TOOL:  # how a client gets a JSON answer here
                tools = body["tools"]
                schema = next(t["input_schema"] for t in tools if t["name"] == JSON_ANSWER_TOOL)
                parsed.json_mode, parsed.schema, parsed.forced_json = True, schema, True
        if body.get("temperature") is not None and body.get("top_p") is not None:
            raise BadRequest(
                "`temperature` and `top_p` cannot both be specified for this model. "
                "Please use only one."
            )
        for key, name in (
            ("max_tokens", "max_tokens"),
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("stop_sequences", "stop"),
        ):
            if body.get(key) is not None:
                parsed.params[name] = body[key]
        return parsed

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind, default = _ERRORS.get(status, ("api_error", "Internal server error"))
        return {
            "type": "error",
            "error": {"type": kind, "message": message or default},
            "request_id": "req_fake0001",
        }

    def error_headers(self, status: int) -> dict[str, str]:
        headers = {"request-id": "req_fake0001"}
        if status in (500, 529):
            headers["x-should-retry"] = "true"
        return headers

    def call_id(self, index: int) -> str:
        # Unique across responses, as the real API's are: a conversation that sends an
        # earlier turn's calls back never holds the same id twice.
        return f"toolu_fake{next(_CALLS):06d}{index:02d}"

    def unary(self, parsed: Parsed, answer: Answer) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if answer.text:
            content.append({"type": "text", "text": answer.text})
        content.extend(_tool_use(call, call["arguments"]) for call in answer.tool_calls)
        return {
            **_message_envelope(parsed),
            "content": content,
            "stop_reason": _stop_reason(answer),
            "usage": _usage(answer, answer.output_tokens),
        }

    def frames(self, parsed: Parsed, answer: Answer) -> tuple[list[bytes], list[bytes]]:
        start = {
            **_message_envelope(parsed),
            "content": [],
            "stop_reason": None,
            "usage": _usage(answer, 1),
        }
        body = [_event({"type": "message_start", "message": start})]
        index = 0
        if answer.text:
            body.append(_block_start(index, {"type": "text", "text": ""}))
            body.append(_event({"type": "ping"}))
            for piece in answer.pieces():
                delta = {"type": "text_delta", "text": piece}
                body.append(_event({"type": "content_block_delta", "index": index, "delta": delta}))
            body.append(_event({"type": "content_block_stop", "index": index}))
            index += 1
        for call in answer.tool_calls:
            body.append(_block_start(index, _tool_use(call, {})))
            arguments = common.arguments_text(call)
            for cut in range(0, len(arguments) + 1, 10):
                delta = {"type": "input_json_delta", "partial_json": arguments[cut : cut + 10]}
                body.append(_event({"type": "content_block_delta", "index": index, "delta": delta}))
            body.append(_event({"type": "content_block_stop", "index": index}))
            index += 1
        tail = [
            _event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _stop_reason(answer), "stop_sequence": None},
                    "usage": {"output_tokens": answer.output_tokens},
                }
            ),
            _event({"type": "message_stop"}),
        ]
        return body, tail

    def stream_error(self, message: str = "") -> bytes:
        return _event(self.error_body(529, message))

    def account_error(self, kind: str) -> tuple[int, dict[str, Any]]:
        if kind == "quota":
            message = (
                "Your credit balance is too low to access the Anthropic API. Please go to "
                "Plans & Billing to upgrade or purchase credits."
            )
            return 400, self.error_body(400, message)
        return 401, self.error_body(401, "")


_ID = re.compile(r"[a-zA-Z0-9_-]+")


def _check_id(value: Any, where: str) -> None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise BadRequest(f"{where}: String should match pattern '^[a-zA-Z0-9_-]+$'")


def _system(system: Any) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    if isinstance(system, list) and all(b.get("type") == "text" for b in system):
        return "\n\n".join(str(b["text"]) for b in system)
    raise BadRequest("system: Input should be a valid string or a list of text blocks")


def _message(parsed: Parsed, message: Any, index: int, pending: set[str]) -> set[str]:
    """Read one message; returns the tool_use ids the next user turn must answer."""
    role = message.get("role") if isinstance(message, dict) else None
    if role not in ("user", "assistant"):
        raise BadRequest(
            f"messages.{index}.role: Unexpected role {role!r}. The Messages API accepts a "
            'top-level `system` parameter, not "system" as an input message role.'
        )
    content = message.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(blocks, list) or not blocks:
        raise BadRequest(f"messages.{index}.content: at least one content block is required")
    turn = Turn(role)
    results: list[dict[str, str]] = []
    texts: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            if not block.get("text"):
                raise BadRequest(f"messages.{index}: text content blocks must be non-empty")
            texts.append(str(block["text"]))
        elif kind == "image" and role == "user":
            turn.images.append(_image(block.get("source") or {}, index))
        elif kind == "tool_use" and role == "assistant":
            if (
                not block.get("id")
                or not block.get("name")
                or not isinstance(block.get("input"), dict)
            ):
                raise BadRequest(
                    f"messages.{index}: tool_use blocks need id, name and an input object"
                )
            _check_id(block["id"], f"messages.{index}.content.tool_use.id")
            turn.tool_calls.append(
                {"id": block["id"], "name": block["name"], "arguments": block["input"]}
            )
        elif kind == "tool_result" and role == "user":
            if block.get("tool_use_id") not in pending:
                raise BadRequest(
                    f"messages.{index}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{block.get('tool_use_id')}. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message."
                )
            results.append(
                {"id": block["tool_use_id"], "content": _result_text(block.get("content"))}
            )
        else:
            raise BadRequest(f"messages.{index}.content: unexpected block type {kind!r} for {role}")
    answered = {r["id"] for r in results}
    if pending - answered:
        raise BadRequest(
            f"messages.{index}: `tool_use` ids were found without `tool_result` blocks "
            f"immediately after: {', '.join(sorted(pending - answered))}"
        )
    turn.text = "\n".join(texts)
    if results:
        parsed.turns.append(Turn("tool", tool_results=results))
    if texts or turn.images or turn.tool_calls:
        parsed.turns.append(turn)
    return {c["id"] for c in turn.tool_calls}


def _result_text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "\n".join(str(b.get("text", "")) for b in content if b.get("type") == "text")


def _image(source: dict[str, Any], index: int) -> dict[str, str]:
    if source.get("type") == "base64":
        if source.get("media_type") not in _MEDIA_TYPES:
            raise BadRequest(
                f"messages.{index}: image media_type must be one of {sorted(_MEDIA_TYPES)}"
            )
        return {"media_type": str(source["media_type"]), "data": str(source.get("data", ""))}
    if source.get("type") == "url" and str(source.get("url", "")).startswith(
        ("http://", "https://")
    ):
        return {"url": str(source["url"])}
    raise BadRequest(f"messages.{index}: image source must be base64 or url")


def _message_envelope(parsed: Parsed) -> dict[str, Any]:
    return {
        "id": "msg_fake0001",
        "type": "message",
        "role": "assistant",
        "model": parsed.model,
        "stop_sequence": None,
    }


def _tool_use(call: dict[str, Any], arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call["id"], "name": call["name"], "input": arguments}


def _stop_reason(answer: Answer) -> str:
    if answer.refused:
        return "refusal"
    if answer.finish == "length":
        return "max_tokens"
    return "tool_use" if answer.finish == "tool_calls" else "end_turn"


def _usage(answer: Answer, output_tokens: int) -> dict[str, Any]:
    """The Messages API's usage: ``input_tokens`` counts only what the cache did not."""
    cached, written = answer.cached_tokens, answer.cache_written
    return {
        "input_tokens": answer.input_tokens - cached - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    return _event({"type": "content_block_start", "index": index, "content_block": block})


def _event(data: dict[str, Any]) -> bytes:
    return common.sse(data, event=str(data["type"]))


VENDOR = AnthropicVendor()


def serve(**options: Any) -> contextlib.AbstractAsyncContextManager[common.Running]:
    """Run the fake in this event loop: ``async with serve() as fake: fake.base_url``."""
    return common.serve(VENDOR, **options)


if __name__ == "__main__":
    common.main(VENDOR)
