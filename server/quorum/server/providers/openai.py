"""OpenAI-compatible chat completions: OpenAI, vLLM, Ollama, llama.cpp server, gateways.

``POST {base_url}/chat/completions`` where ``base_url`` ends in ``/v1``.

Choices made for compatibility with the many servers that speak this API:

* The output limit is sent as ``max_tokens``, which every compatible server accepts,
  except to OpenAI's own API (``api.openai.com`` and Azure OpenAI), which rejects
  ``max_tokens`` for its reasoning models and accepts ``max_completion_tokens`` for
  all of them.
* JSON schema output is requested with ``strict: true``: the schema must then close
  every object (``additionalProperties: false``) and list every property as required.
* ``logprobs: true`` asks for per-token log-probabilities; their mean becomes
  :attr:`Completion.mean_logprob` (the cascade's confidence signal).
* Streams ask for ``stream_options.include_usage`` so the last chunk carries usage;
  a stream is complete at ``data: [DONE]`` (or at the end of the body once a
  ``finish_reason`` arrived). Anything shorter is an error, never a silent truncation.
  A server that ignores ``include_usage`` leaves the usage unknown (``None``), for the
  caller to estimate; never a zero that would make the call look free.
* A ``refusal`` (the model declined) is the answer's text with finish reason
  ``content_filter``, as Anthropic's ``refusal`` stop is, not an empty ``stop``.
* Tool-call deltas are assembled by ``index``; a server that sends each call whole
  without one gets a new call for each new id.
* A tool call without an id or a name, or whose arguments are not a JSON object, text
  (``content``, ``refusal``) that is not a string, unary or streamed, a log-probability
  that is not a finite number at most 0, and an answer over
  :data:`~quorum.server.providers.base.MAX_ANSWER_BYTES` are bad responses.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from pydantic import SecretStr

from quorum.server.config import ProviderConfig
from quorum.server.domain import (
    Completion,
    GenerationParams,
    ImagePart,
    Message,
    ResponseFormatType,
    Role,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    Usage,
)
from quorum.server.errors import ProviderBadResponse, ProviderUnavailable
from quorum.server.providers import sse
from quorum.server.providers.base import (
    AnswerSize,
    ProviderRequest,
    StreamDelta,
    certain_at_most,
    checked_completion,
    checked_tool_call,
    portable_call_id,
    text_field,
)
from quorum.server.providers.http import (
    MAX_BODY_BYTES,
    HttpClient,
    credentials,
    redact,
    stream_timeout_for,
    timeout_for,
)

_OPENAI_HOSTS = ("api.openai.com", ".openai.azure.com")
_NO_PARAMS = {"type": "object", "properties": {}}


class OpenAIProvider:
    """Adapter for any server speaking OpenAI's chat completions API."""

    def __init__(
        self, name: str, config: ProviderConfig, api_key: SecretStr | None, http: HttpClient
    ) -> None:
        self._name = name
        self._config = config
        self._http = http
        self._url = f"{config.base_url}/chat/completions"
        host = urlsplit(config.base_url).hostname or ""
        self._limit_field = (
            "max_completion_tokens"
            if host == _OPENAI_HOSTS[0] or host.endswith(_OPENAI_HOSTS[1])
            else "max_tokens"
        )
        self._headers = dict(config.headers)
        if api_key is not None:
            self._headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
        self._secrets = credentials(self._headers)  # redacted from vendor error text

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return "openai"

    async def complete(self, request: ProviderRequest) -> Completion:
        body = self._body(request, stream=False)
        answer = await sse.post_json(
            self._http,
            self._name,
            self._url,
            body,
            headers=self._headers,
            time_limit=self._timeout(request),
            max_bytes=MAX_BODY_BYTES,
        )
        try:
            completion = _completion(answer)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise ProviderBadResponse(
                f"{self._name}: unexpected completion shape: {exc!r}", provider=self._name
            ) from exc
        return checked_completion(self._name, completion)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamDelta]:
        body = self._body(request, stream=True)
        calls: dict[int, dict[str, str]] = {}
        usage: Usage | None = None
        finish = ""
        done = refused = False
        size = AnswerSize(self._name)
        async with sse.open_events(
            self._http,
            self._name,
            self._url,
            body,
            headers=self._headers,
            time_limit=self._stream_timeout(request),
        ) as events:
            async for event in events:
                if done:
                    continue  # drain to the end so the connection can be reused
                if event.data.strip() == "[DONE]":
                    done = True
                    continue
                chunk = sse.decode_json(self._name, event.data)
                try:
                    text, chunk_finish, chunk_usage, refusal, arguments = _read_chunk(
                        self._name, chunk, calls, self._secrets
                    )
                except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                    raise ProviderBadResponse(
                        f"{self._name}: unexpected stream chunk: {exc!r}", provider=self._name
                    ) from exc
                usage = chunk_usage or usage
                finish = chunk_finish or finish
                refused = refused or bool(refusal)
                if arguments:
                    size.add(arguments)
                if text or refusal:
                    size.add(text + refusal)
                    yield StreamDelta(text=text + refusal)
        if not done and not finish:
            raise ProviderBadResponse(
                f"{self._name}: stream ended before [DONE]", provider=self._name
            )
        for index in sorted(calls):
            call = calls[index]
            tool_call = ToolCall(call["id"], call["name"], call["arguments"] or "{}")
            checked = checked_tool_call(self._name, tool_call, cut_off=finish == "length")
            yield StreamDelta(tool_call=checked)
        # No usage (a server that ignores include_usage): None, so the caller estimates it.
        finish = "content_filter" if refused else finish or "stop"
        yield StreamDelta(finish_reason=finish, usage=usage)

    async def close(self) -> None:
        return None

    def _timeout(self, request: ProviderRequest) -> aiohttp.ClientTimeout:
        limit = min(request.timeout_s, self._config.timeout_s)
        return timeout_for(limit, self._config.connect_timeout_s)

    def _stream_timeout(self, request: ProviderRequest) -> aiohttp.ClientTimeout:
        silence = min(request.timeout_s, self._config.timeout_s)
        return stream_timeout_for(silence, request.stream_total_s, self._config.connect_timeout_s)

    def _body(self, request: ProviderRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model_id,
            "messages": [_message(m) for m in request.messages],
        }
        body.update(_params(self._name, request.params, self._limit_field))
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body


def _params(provider: str, params: GenerationParams, limit_field: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if params.max_tokens:
        out[limit_field] = params.max_tokens
    if params.temperature is not None:
        out["temperature"] = params.temperature
    if params.top_p is not None:
        out["top_p"] = params.top_p
    if params.stop:
        out["stop"] = list(params.stop)
    fmt = params.response_format
    if fmt.type is ResponseFormatType.JSON_OBJECT:
        out["response_format"] = {"type": "json_object"}
    elif fmt.type is ResponseFormatType.JSON_SCHEMA:
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": fmt.schema_name or "response",
                "schema": sse.request_json(provider, fmt.json_schema, "json_schema", {}),
                "strict": True,
            },
        }
    if params.tools:
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": sse.request_json(
                        provider, tool.parameters_json, f"tool {tool.name} parameters", _NO_PARAMS
                    ),
                },
            }
            for tool in params.tools
        ]
        out["tool_choice"] = _tool_choice(params.tool_choice)
    if params.logprobs:
        out["logprobs"] = True
    return out


def _message(message: Message) -> dict[str, Any]:
    if message.role is Role.TOOL:
        return {
            "role": "tool",
            "tool_call_id": portable_call_id(message.tool_call_id),
            "content": message.text,
        }
    out: dict[str, Any] = {"role": message.role.value}
    if message.parts and message.role is Role.USER:
        parts: list[dict[str, Any]] = []
        if message.content:
            parts.append({"type": "text", "text": message.content})
        for part in message.parts:
            if part.text is not None:
                parts.append({"type": "text", "text": part.text})
            elif part.image is not None:
                parts.append({"type": "image_url", "image_url": {"url": image_url(part.image)}})
        out["content"] = parts
    else:
        out["content"] = message.text
    if message.role is Role.ASSISTANT and message.tool_calls:
        out["content"] = message.text or None
        out["tool_calls"] = [
            {
                "id": portable_call_id(call.id),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json or "{}"},
            }
            for call in message.tool_calls
        ]
    if message.name:
        out["name"] = message.name
    return out


def image_url(image: ImagePart) -> str:
    """A URL for the image: its own, or a ``data:`` URL carrying its bytes."""
    if image.url:
        return image.url
    media_type = image.media_type or "image/png"
    return f"data:{media_type};base64,{base64.b64encode(image.data).decode('ascii')}"


def _completion(answer: Any) -> Completion:
    choice = answer["choices"][0]
    message = choice["message"]
    calls = tuple(
        ToolCall(
            id=str(call.get("id") or ""),
            name=str(call["function"].get("name") or ""),
            arguments_json=_arguments(call["function"].get("arguments")),
        )
        for call in message.get("tool_calls") or ()
    )
    content = text_field(message.get("content") or "", "message.content")
    finish = str(choice.get("finish_reason") or "stop")
    refusal = text_field(message.get("refusal") or "", "message.refusal")
    if refusal and not content:
        # The model declined: its explanation is the answer, marked as filtered (as an
        # Anthropic "refusal" stop is), never an empty answer that looks complete.
        content, finish = refusal, "content_filter"
    return Completion(
        content=content,
        tool_calls=calls,
        finish_reason=finish,
        usage=_usage(answer.get("usage")),
        mean_logprob=_mean_logprob(choice.get("logprobs")),
    )


def _arguments(raw: Any, default: str = "{}") -> str:
    """A call's ``arguments`` (or a streamed piece of them, with ``default`` ""): a JSON
    text; an object sent as is, as a few compatible servers do, is written as one."""
    if isinstance(raw, dict):
        return orjson.dumps(raw).decode()
    return str(raw or default)


def _usage(raw: Any) -> Usage:
    if not raw:
        return Usage()
    details = raw.get("prompt_tokens_details") or {}
    return Usage(
        int(raw.get("prompt_tokens") or 0),
        int(raw.get("completion_tokens") or 0),
        int(details.get("cached_tokens") or 0),  # read from the prompt cache
    )


def _mean_logprob(raw: Any) -> float | None:
    """The mean of the tokens' log-probabilities, if there are any.

    A log-probability is finite and at most 0 (rounding just above 0 is read as 0). One
    that is not ("NaN", "-Infinity" as strings, or 5.0) is malformed, and raises
    ValueError: a bad response, as this adapter treats every malformed field (a logprob
    that is no number already was), never a NaN that passes the cascade's floor or a
    confidence above certainty."""
    tokens = (raw or {}).get("content") or []
    values = [certain_at_most(float(t["logprob"])) for t in tokens]
    if not values:
        return None
    return sum(values) / len(values)


def _read_chunk(
    provider: str, chunk: Any, calls: dict[int, dict[str, str]], secrets: tuple[str, ...] = ()
) -> tuple[str, str, Usage | None, str, str]:
    """Fold one ``chat.completion.chunk`` in: its text, finish reason, usage, refusal
    text (a model that declines streams its explanation in ``delta.refusal``) and the
    tool-call arguments it added. An error chunk raises, its message redacted of
    ``secrets``."""
    if isinstance(chunk, dict) and chunk.get("error"):
        error = chunk["error"]
        message = error.get("message", "") if isinstance(error, dict) else str(error)
        message = redact(str(message), secrets)
        raise ProviderUnavailable(f"{provider}: error mid-stream: {message}", provider=provider)
    usage = _usage(chunk["usage"]) if chunk.get("usage") else None
    choices = chunk.get("choices") or []
    if not choices:
        return "", "", usage, "", ""
    choice = choices[0]
    delta = choice.get("delta") or {}
    added = ""
    for call in delta.get("tool_calls") or ():
        index = call.get("index")
        if index is None:
            # Some compatible servers send each call whole, with an id and no index.
            last = max(calls, default=-1)
            same = last >= 0 and call.get("id") in (None, "", calls[last]["id"])
            index = last if same else last + 1
        slot = calls.setdefault(int(index), {"id": "", "name": "", "arguments": ""})
        function = call.get("function") or {}
        slot["id"] = call.get("id") or slot["id"]
        slot["name"] += function.get("name") or ""
        arguments = _arguments(function.get("arguments"), "")
        slot["arguments"] += arguments
        added += arguments
    # Text that is not a string is malformed, as in a unary answer (never str() of it).
    text = text_field(delta.get("content") or "", "delta.content")
    refusal = text_field(delta.get("refusal") or "", "delta.refusal")
    return text, str(choice.get("finish_reason") or ""), usage, refusal, added


def _tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    """Chat Completions' ``tool_choice`` for ``choice``."""
    if choice.mode is ToolChoiceMode.TOOL:
        return {"type": "function", "function": {"name": choice.tool}}
    return str(choice.mode.value)  # "auto", "none" or "required"
