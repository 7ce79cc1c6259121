"""Anthropic Messages API: ``POST {base_url}/v1/messages``.

Mapping from Quorum's conversation:

* System messages become the top-level ``system`` string (joined by blank lines).
* Tool results become ``tool_result`` blocks in a user turn; consecutive turns of one
  role are merged, because the API wants every result of a parallel call in the one
  user turn that follows the assistant's ``tool_use`` blocks.
* Images are ``image`` blocks with a ``base64`` source (bytes or a ``data:`` URL) or
  a ``url`` source.
* ``max_tokens`` is required by the API: the request's, or :data:`DEFAULT_MAX_TOKENS`.
* JSON output is emulated the way Anthropic documents it: a tool named
  :data:`JSON_TOOL` whose ``input_schema`` is the requested schema (any object for
  plain JSON mode) is forced with ``tool_choice``; its input is returned as the
  completion's text. With other tools present the model is asked to call *some*
  tool (``tool_choice: any``), so it either calls one of them or answers in JSON.
* Log-probabilities do not exist in this API: ``mean_logprob`` is always ``None``.
* ``temperature`` and ``top_p`` are not sent together (recent models refuse the pair):
  with both set, only ``temperature`` goes.
* Stop reasons are translated to the OpenAI vocabulary the rest of Quorum uses.
* A ``tool_use`` block without an id or a name, or whose input is not a JSON object,
  text (a text block's, a ``text_delta``'s, a ``partial_json``) that is not a string,
  and an answer over :data:`~quorum.server.providers.base.MAX_ANSWER_BYTES` are bad
  responses.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
from pydantic import SecretStr

from quorum.server.config import ProviderConfig
from quorum.server.domain import (
    Completion,
    ContentPart,
    ImagePart,
    Message,
    ResponseFormatType,
    Role,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    Usage,
)
from quorum.server.errors import ProviderBadResponse
from quorum.server.providers import sse
from quorum.server.providers.base import (
    AnswerSize,
    ProviderRequest,
    StreamDelta,
    checked_completion,
    checked_tool_call,
    portable_call_id,
    text_field,
)
from quorum.server.providers.http import (
    MAX_BODY_BYTES,
    HttpClient,
    credentials,
    error_for_status,
    stream_timeout_for,
    timeout_for,
)

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
JSON_TOOL = "json_response"

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Error types of streamed ``error`` events, by the HTTP status the API gives them.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)


class AnthropicProvider:
    """Adapter for Anthropic's Messages API."""

    def __init__(
        self, name: str, config: ProviderConfig, api_key: SecretStr | None, http: HttpClient
    ) -> None:
        self._name = name
        self._config = config
        self._http = http
        self._url = f"{config.base_url}/v1/messages"
        self._headers = {"anthropic-version": API_VERSION, **config.headers}
        if api_key is not None:
            self._headers["x-api-key"] = api_key.get_secret_value()
        self._secrets = credentials(self._headers)  # redacted from vendor error text

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return "anthropic"

    async def complete(self, request: ProviderRequest) -> Completion:
        answer = await sse.post_json(
            self._http,
            self._name,
            self._url,
            self._body(request, stream=False),
            headers=self._headers,
            time_limit=self._timeout(request),
            max_bytes=MAX_BODY_BYTES,
        )
        try:
            completion = _completion(answer, json_tool=_json_tool(request))
        except _SHAPE_ERRORS as exc:
            raise ProviderBadResponse(
                f"{self._name}: unexpected message shape: {exc!r}", provider=self._name
            ) from exc
        return checked_completion(self._name, completion)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamDelta]:
        json_tool = _json_tool(request)
        blocks: dict[int, dict[str, str]] = {}
        inputs = Usage()  # input tokens with their cache reads and writes
        output_tokens = 0
        stop_reason = ""
        stopped = False
        held: list[ToolCall] = []  # malformed calls, judged by the stop reason
        size = AnswerSize(self._name)
        async with sse.open_events(
            self._http,
            self._name,
            self._url,
            self._body(request, stream=True),
            headers=self._headers,
            time_limit=self._stream_timeout(request),
        ) as events:
            async for event in events:
                if stopped or event.event == "ping":
                    continue
                data = sse.decode_json(self._name, event.data)
                kind = data.get("type") if isinstance(data, dict) else None
                try:
                    if kind == "error" or event.event == "error":
                        raise self._stream_error(data)
                    if kind == "message_start":
                        usage = data["message"].get("usage") or {}
                        inputs = _inputs(usage)
                        output_tokens = int(usage.get("output_tokens") or 0)
                    elif kind == "content_block_start":
                        block = data["content_block"]
                        blocks[int(data["index"])] = {
                            "type": str(block["type"]),
                            "id": str(block.get("id") or ""),
                            "name": str(block.get("name") or ""),
                            "json": "",
                        }
                        if block["type"] == "text":
                            text = text_field(block.get("text"), "content_block.text")
                            if text:
                                size.add(text)
                                yield StreamDelta(text=text)
                    elif kind == "content_block_delta":
                        delta = data["delta"]
                        slot = blocks[int(data["index"])]
                        if delta["type"] == "text_delta":
                            text = text_field(delta["text"], "text_delta.text")
                            size.add(text)
                            yield StreamDelta(text=text)
                        elif delta["type"] == "input_json_delta":
                            piece = text_field(delta["partial_json"], "partial_json")
                            size.add(piece)
                            if json_tool and slot["name"] == json_tool:
                                yield StreamDelta(text=piece)
                            else:
                                slot["json"] += piece
                    elif kind == "content_block_stop":
                        slot = blocks[int(data["index"])]
                        if slot["type"] == "tool_use" and not (
                            json_tool and slot["name"] == json_tool
                        ):
                            call = ToolCall(slot["id"], slot["name"], slot["json"] or "{}")
                            try:
                                checked = checked_tool_call(self._name, call)
                            except ProviderBadResponse:
                                # Judged once the stop reason is known: arguments cut
                                # off at max_tokens are the caller's doing.
                                held.append(call)
                            else:
                                yield StreamDelta(tool_call=checked)
                    elif kind == "message_delta":
                        stop_reason = str(data["delta"].get("stop_reason") or stop_reason)
                        usage = data.get("usage") or {}
                        output_tokens = int(usage.get("output_tokens") or output_tokens)
                        if usage.get("input_tokens") is not None:
                            inputs = _inputs(usage)
                    elif kind == "message_stop":
                        stopped = True
                except _SHAPE_ERRORS as exc:
                    raise ProviderBadResponse(
                        f"{self._name}: unexpected stream event: {exc!r}", provider=self._name
                    ) from exc
        if not stopped:
            raise ProviderBadResponse(
                f"{self._name}: stream ended before message_stop", provider=self._name
            )
        for call in held:
            cut_off = stop_reason == "max_tokens"
            yield StreamDelta(tool_call=checked_tool_call(self._name, call, cut_off=cut_off))
        answered_json = bool(json_tool) and any(b["name"] == json_tool for b in blocks.values())
        finish = _finish(stop_reason, answered_json)
        yield StreamDelta(finish_reason=finish, usage=replace(inputs, output_tokens=output_tokens))

    async def close(self) -> None:
        return None

    def _stream_error(self, data: Any) -> Exception:
        error = data.get("error") if isinstance(data, dict) else None
        error = error if isinstance(error, dict) else {}
        kind = str(error.get("type") or "api_error")
        message = f"{error.get('message') or 'error event'} ({kind}, mid-stream)"
        status = _ERROR_STATUS.get(kind, 500)
        return error_for_status(self._name, status, message, {}, secrets=self._secrets)

    def _timeout(self, request: ProviderRequest) -> aiohttp.ClientTimeout:
        limit = min(request.timeout_s, self._config.timeout_s)
        return timeout_for(limit, self._config.connect_timeout_s)

    def _stream_timeout(self, request: ProviderRequest) -> aiohttp.ClientTimeout:
        silence = min(request.timeout_s, self._config.timeout_s)
        return stream_timeout_for(silence, request.stream_total_s, self._config.connect_timeout_s)

    def _body(self, request: ProviderRequest, *, stream: bool) -> dict[str, Any]:
        params = request.params
        system = "\n\n".join(m.text for m in request.messages if m.role is Role.SYSTEM)
        body: dict[str, Any] = {
            "model": request.model_id,
            "max_tokens": params.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": _messages(self._name, request.messages),
        }
        if system:
            body["system"] = system
        if params.temperature is not None:
            body["temperature"] = params.temperature
        elif params.top_p is not None:
            # Recent Claude models refuse temperature and top_p together: temperature wins.
            body["top_p"] = params.top_p
        if params.stop:
            body["stop_sequences"] = list(params.stop)
        tools = [
            {
                "name": tool.name,
                "description": tool.description,
                "input_schema": sse.request_json(
                    self._name,
                    tool.parameters_json,
                    f"tool {tool.name} parameters",
                    {"type": "object", "properties": {}},
                ),
            }
            for tool in params.tools
        ]
        choice = params.tool_choice
        if tools:
            body["tool_choice"] = _tool_choice(choice)
        json_tool = _json_tool(request)
        if json_tool:
            fmt = params.response_format
            schema = sse.request_json(self._name, fmt.json_schema, "json_schema", None)
            tools.append(
                {
                    "name": json_tool,
                    "description": "Give the final answer as a JSON object matching the schema.",
                    "input_schema": schema or {"type": "object"},
                }
            )
            body["tool_choice"] = (
                {"type": "any"} if len(tools) > 1 else {"type": "tool", "name": json_tool}
            )
        if tools:
            body["tools"] = tools
        if stream:
            body["stream"] = True
        return body


def _tool_choice(choice: ToolChoice) -> dict[str, str]:
    """The Messages API's ``tool_choice`` for ``choice``."""
    if choice.mode is ToolChoiceMode.TOOL:
        return {"type": "tool", "name": choice.tool}
    if choice.mode is ToolChoiceMode.REQUIRED:
        return {"type": "any"}
    return {"type": str(choice.mode.value)}  # "auto" or "none"


def _json_tool(request: ProviderRequest) -> str:
    """The name of the tool whose call is the JSON answer, or ``""`` when there is none.

    There is one when JSON was asked for and no tool call is forced (a forced call is
    this turn's answer; JSON mode is for text). It is :data:`JSON_TOOL`, or that name
    with a number when the caller has a tool of that name, so a call of the caller's
    own tool is never read as the answer (and the vendor never sees two tools of one
    name)."""
    params = request.params
    if (
        params.response_format.type is ResponseFormatType.TEXT
        or params.tool_choice.mode is not ToolChoiceMode.AUTO
    ):
        return ""
    taken = {tool.name for tool in params.tools}
    name, n = JSON_TOOL, 1
    while name in taken:
        n += 1
        name = f"{JSON_TOOL}_{n}"
    return name


def _messages(provider: str, messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role is Role.SYSTEM:
            continue
        role = "assistant" if message.role is Role.ASSISTANT else "user"
        blocks = _blocks(provider, message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _blocks(provider: str, message: Message) -> list[dict[str, Any]]:
    if message.role is Role.TOOL:
        return [
            {
                "type": "tool_result",
                "tool_use_id": portable_call_id(message.tool_call_id),
                "content": message.text,
            }
        ]
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for part in message.parts:
        block = _part(part)
        if block is not None:
            blocks.append(block)
    for call in message.tool_calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": portable_call_id(call.id),
                "name": call.name,
                "input": sse.request_json(provider, call.arguments_json, "tool arguments", {}),
            }
        )
    return blocks


def _part(part: ContentPart) -> dict[str, Any] | None:
    if part.text:
        return {"type": "text", "text": part.text}
    if part.image is not None:
        return {"type": "image", "source": _image_source(part.image)}
    return None


def _image_source(image: ImagePart) -> dict[str, Any]:
    if image.data:
        data = base64.b64encode(image.data).decode("ascii")
        return {"type": "base64", "media_type": image.media_type or "image/png", "data": data}
    if image.url.startswith("data:"):
        header, _, data = image.url.partition(",")
        media_type = header.removeprefix("data:").split(";")[0] or "image/png"
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": image.url}


def _inputs(usage: dict[str, Any], output_tokens: int = 0) -> Usage:
    """Every input token the model read (fresh, written to and read from the prompt
    cache), with the cache's share told apart for pricing."""
    written = int(usage.get("cache_creation_input_tokens") or 0)
    read = int(usage.get("cache_read_input_tokens") or 0)
    fresh = int(usage.get("input_tokens") or 0)
    return Usage(fresh + written + read, output_tokens, read, written)


def _finish(stop_reason: str, answered_json: bool) -> str:
    if answered_json and stop_reason != "max_tokens":
        return "stop"  # the answer tool's call is the JSON answer, complete
    return _STOP_REASONS.get(stop_reason, stop_reason or "stop")


def _completion(answer: Any, *, json_tool: str) -> Completion:
    texts: list[str] = []
    calls: list[ToolCall] = []
    answered_json = False
    for block in answer["content"]:
        if block["type"] == "text":
            texts.append(text_field(block["text"], "text block"))
        elif block["type"] == "tool_use":
            if json_tool and block["name"] == json_tool:
                texts.append(json.dumps(block["input"], ensure_ascii=False))
                answered_json = True
            else:
                arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
                calls.append(
                    ToolCall(str(block.get("id") or ""), str(block["name"] or ""), arguments)
                )
    usage = answer.get("usage") or {}
    return Completion(
        content="".join(texts) if not answered_json else texts[-1],
        tool_calls=tuple(calls),
        finish_reason=_finish(str(answer.get("stop_reason") or ""), answered_json),
        usage=_inputs(usage, int(usage.get("output_tokens") or 0)),
    )
