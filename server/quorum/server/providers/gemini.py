"""Google Gemini API: ``POST {base_url}/v1beta/models/{model}:generateContent``.

Streaming uses ``:streamGenerateContent?alt=sse``: every SSE event is a whole
``GenerateContentResponse``; there is no end marker, so a stream is complete only when
a candidate carried a ``finishReason``.

Mapping choices:

* System messages become ``systemInstruction``; the assistant role is ``model``; tool
  results are ``functionResponse`` parts in a user turn (a JSON-object result is sent
  as is, anything else as ``{"output": ...}``).
* Tool parameters and response schemas are sent as ``parametersJsonSchema`` and
  ``responseJsonSchema``, which take standard JSON Schema (``parameters`` and
  ``responseSchema`` only take an OpenAPI subset).
* Images: bytes and ``data:`` URLs become ``inlineData``; other URLs ``fileData``.
* Gemini gives function calls no id of its own (or an optional one). The adapter makes
  one, and appends the call's ``thoughtSignature`` when there is one, so that sending
  the call back in a later turn restores the signature thinking models require.
* ``usageMetadata``: input is ``promptTokenCount`` (+ tool-use prompt tokens), output is
  ``candidatesTokenCount`` + ``thoughtsTokenCount`` (thinking is billed as output).
* ``logprobs`` sets ``responseLogprobs``; the candidate's ``avgLogprobs`` is the mean
  (one that is not a finite number at most 0 is a bad response).
* A 429 without ``Retry-After`` takes its delay from the ``google.rpc.RetryInfo`` detail.
* A function call without a name, or whose ``args`` are not a JSON object, a part's
  ``text`` that is not a string, and an answer over
  :data:`~quorum.server.providers.base.MAX_ANSWER_BYTES` are bad responses (a call
  without an id is not: the adapter makes one).
"""

from __future__ import annotations

import base64
import json
import mimetypes
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

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
from quorum.server.errors import (
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
)
from quorum.server.providers import sse
from quorum.server.providers.base import (
    AnswerSize,
    ProviderRequest,
    StreamDelta,
    certain_at_most,
    checked_completion,
    checked_tool_call,
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

_SIGNATURE = "~sig~"
_CALL_PREFIX = "gcall_"
# Finish reasons that mean the model failed to answer, when nothing came with them.
_FAILED = frozenset(
    {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS", "OTHER"}
)
_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)


class GeminiProvider:
    """Adapter for the Gemini API (Google AI, API-key authentication)."""

    def __init__(
        self, name: str, config: ProviderConfig, api_key: SecretStr | None, http: HttpClient
    ) -> None:
        self._name = name
        self._config = config
        self._http = http
        self._headers = dict(config.headers)
        if api_key is not None:
            self._headers["x-goog-api-key"] = api_key.get_secret_value()
        self._secrets = credentials(self._headers)  # redacted from vendor error text

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return "gemini"

    async def complete(self, request: ProviderRequest) -> Completion:
        answer = await sse.post_json(
            self._http,
            self._name,
            self._url(request, "generateContent"),
            self._body(request),
            headers=self._headers,
            time_limit=self._timeout(request),
            refine=_retry_info,
            max_bytes=MAX_BODY_BYTES,
        )
        try:
            state = _State(self._secrets)
            state.add(self._name, answer)
            completion = state.completion()
        except _SHAPE_ERRORS as exc:
            raise ProviderBadResponse(
                f"{self._name}: unexpected response shape: {exc!r}", provider=self._name
            ) from exc
        state.check_finished(self._name)
        return checked_completion(self._name, completion)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamDelta]:
        state = _State(self._secrets)
        size = AnswerSize(self._name)
        async with sse.open_events(
            self._http,
            self._name,
            self._url(request, "streamGenerateContent") + "?alt=sse",
            self._body(request),
            headers=self._headers,
            time_limit=self._stream_timeout(request),
            refine=_retry_info,
        ) as events:
            async for event in events:
                chunk = sse.decode_json(self._name, event.data)
                try:
                    text, calls = state.add(self._name, chunk)
                except _SHAPE_ERRORS as exc:
                    raise ProviderBadResponse(
                        f"{self._name}: unexpected stream chunk: {exc!r}", provider=self._name
                    ) from exc
                if text:
                    size.add(text)
                    yield StreamDelta(text=text)
                for call in calls:
                    size.add(call.arguments_json)
                    yield StreamDelta(tool_call=checked_tool_call(self._name, call))
        if not state.finish:
            raise ProviderBadResponse(
                f"{self._name}: stream ended without a finishReason", provider=self._name
            )
        state.check_finished(self._name)
        yield StreamDelta(finish_reason=state.finish_reason(), usage=state.usage)

    async def close(self) -> None:
        return None

    def _url(self, request: ProviderRequest, method: str) -> str:
        model = quote(request.model_id.removeprefix("models/"), safe="-._~")
        return f"{self._config.base_url}/v1beta/models/{model}:{method}"

    def _timeout(self, request: ProviderRequest) -> aiohttp.ClientTimeout:
        limit = min(request.timeout_s, self._config.timeout_s)
        return timeout_for(limit, self._config.connect_timeout_s)

    def _stream_timeout(self, request: ProviderRequest) -> aiohttp.ClientTimeout:
        silence = min(request.timeout_s, self._config.timeout_s)
        return stream_timeout_for(silence, request.stream_total_s, self._config.connect_timeout_s)

    def _body(self, request: ProviderRequest) -> dict[str, Any]:
        params = request.params
        body: dict[str, Any] = {"contents": _contents(self._name, request.messages)}
        system = "\n\n".join(m.text for m in request.messages if m.role is Role.SYSTEM)
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config: dict[str, Any] = {}
        if params.max_tokens:
            config["maxOutputTokens"] = params.max_tokens
        if params.temperature is not None:
            config["temperature"] = params.temperature
        if params.top_p is not None:
            config["topP"] = params.top_p
        if params.stop:
            config["stopSequences"] = list(params.stop)
        fmt = params.response_format
        if fmt.type is not ResponseFormatType.TEXT:
            config["responseMimeType"] = "application/json"
        if fmt.type is ResponseFormatType.JSON_SCHEMA:
            config["responseJsonSchema"] = sse.request_json(
                self._name, fmt.json_schema, "json_schema", {}
            )
        if params.logprobs:
            config["responseLogprobs"] = True
        if config:
            body["generationConfig"] = config
        if params.tools:
            declarations = []
            for tool in params.tools:
                declaration: dict[str, Any] = {"name": tool.name, "description": tool.description}
                if tool.parameters_json:
                    declaration["parametersJsonSchema"] = sse.request_json(
                        self._name, tool.parameters_json, f"tool {tool.name} parameters", {}
                    )
                declarations.append(declaration)
            body["tools"] = [{"functionDeclarations": declarations}]
            body["toolConfig"] = {"functionCallingConfig": _calling_config(params.tool_choice)}
        return body


class _State:
    """What the responses (one, or every chunk of a stream) said so far."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self.secrets = secrets  # the provider's credentials: redacted from an error
        self.texts: list[str] = []
        self.calls: list[ToolCall] = []
        self.finish = ""
        self.usage: Usage | None = None  # None until usageMetadata comes
        self.mean_logprob: float | None = None

    def add(self, provider: str, answer: Any) -> tuple[str, list[ToolCall]]:
        """Fold one ``GenerateContentResponse`` in; return its new text and calls."""
        if not isinstance(answer, dict):
            raise TypeError("response is not an object")
        if answer.get("error"):
            error = answer["error"]
            raise error_for_status(
                provider,
                int(error.get("code") or 500),
                str(error.get("message") or ""),
                {},
                secrets=self.secrets,
            )
        if answer.get("usageMetadata"):
            meta = answer["usageMetadata"]
            self.usage = Usage(
                int(meta.get("promptTokenCount") or 0)
                + int(meta.get("toolUsePromptTokenCount") or 0),
                int(meta.get("candidatesTokenCount") or 0)
                + int(meta.get("thoughtsTokenCount") or 0),
                int(meta.get("cachedContentTokenCount") or 0),  # of promptTokenCount
            )
        candidates = answer.get("candidates") or []
        if not candidates:
            blocked = (answer.get("promptFeedback") or {}).get("blockReason")
            if blocked:
                raise ProviderRejected(f"{provider}: prompt blocked ({blocked})", provider=provider)
            if "usageMetadata" not in answer:
                raise KeyError("candidates")
            return "", []
        candidate = candidates[0]
        texts: list[str] = []
        calls: list[ToolCall] = []
        for part in (candidate.get("content") or {}).get("parts") or ():
            if "functionCall" in part:
                call = part["functionCall"]
                # The API gives calls no id (older models): one unique across turns, so
                # each result finds its call's name, on any vendor.
                call_id = str(call.get("id") or f"{_CALL_PREFIX}{secrets.token_hex(8)}")
                if part.get("thoughtSignature"):
                    call_id += _SIGNATURE + str(part["thoughtSignature"])
                arguments = json.dumps(call.get("args") or {}, ensure_ascii=False)
                calls.append(ToolCall(call_id, str(call.get("name") or ""), arguments))
            elif "text" in part and not part.get("thought"):
                texts.append(text_field(part["text"], "part.text"))
        if candidate.get("finishReason"):
            self.finish = str(candidate["finishReason"])
        if candidate.get("avgLogprobs") is not None:
            # A log-probability is finite and at most 0 (rounding just above 0 is read as
            # 0): anything else ("NaN", 5.0) is malformed, a bad response as every
            # malformed field here is.
            self.mean_logprob = certain_at_most(float(candidate["avgLogprobs"]))
        self.texts.extend(texts)
        self.calls.extend(calls)
        return "".join(texts), calls

    def check_finished(self, provider: str) -> None:
        """A finish that failed to produce anything (a malformed function call, too many
        calls, ...) is a bad response, not an empty answer."""
        if self.finish in _FAILED and not self.texts and not self.calls:
            raise ProviderBadResponse(
                f"{provider}: the model produced no answer (finishReason {self.finish})",
                provider=provider,
            )

    def finish_reason(self) -> str:
        if self.calls and self.finish == "STOP":
            return "tool_calls"
        return _FINISH.get(self.finish, self.finish.lower() or "stop")

    def completion(self) -> Completion:
        if not self.finish and not self.texts and not self.calls:
            raise KeyError("candidates[0].content")
        return Completion(
            content="".join(self.texts),
            tool_calls=tuple(self.calls),
            finish_reason=self.finish_reason(),
            usage=self.usage or Usage(),
            mean_logprob=self.mean_logprob,
        )


def _contents(provider: str, messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    contents: list[dict[str, Any]] = []
    for message in messages:
        if message.role is Role.SYSTEM:
            continue
        role = "model" if message.role is Role.ASSISTANT else "user"
        parts = _parts(provider, message, names)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def _parts(provider: str, message: Message, names: dict[str, str]) -> list[dict[str, Any]]:
    if message.role is Role.TOOL:
        call_id, _, _ = message.tool_call_id.partition(_SIGNATURE)
        result = _tool_result(message.text)
        response: dict[str, Any] = {
            "name": message.name or names.get(message.tool_call_id, ""),
            "response": result,
        }
        if call_id and not call_id.startswith(_CALL_PREFIX):
            response["id"] = call_id
        return [{"functionResponse": response}]
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"text": message.content})
    parts.extend(p for p in (_part(part) for part in message.parts) if p is not None)
    for call in message.tool_calls:
        call_id, _, signature = call.id.partition(_SIGNATURE)
        function: dict[str, Any] = {
            "name": call.name,
            "args": sse.request_json(provider, call.arguments_json, "tool arguments", {}),
        }
        if call_id and not call_id.startswith(_CALL_PREFIX):
            function["id"] = call_id
        part: dict[str, Any] = {"functionCall": function}
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _tool_result(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"output": text}
    return value if isinstance(value, dict) else {"output": value}


def _part(part: ContentPart) -> dict[str, Any] | None:
    if part.text:
        return {"text": part.text}
    if part.image is not None:
        return _image(part.image)
    return None


def _image(image: ImagePart) -> dict[str, Any]:
    if image.data:
        data = base64.b64encode(image.data).decode("ascii")
        return {"inlineData": {"mimeType": image.media_type or "image/png", "data": data}}
    if image.url.startswith("data:"):
        header, _, data = image.url.partition(",")
        media_type = header.removeprefix("data:").split(";")[0] or "image/png"
        return {"inlineData": {"mimeType": media_type, "data": data}}
    media_type = image.media_type or mimetypes.guess_type(image.url)[0] or "image/jpeg"
    return {"fileData": {"mimeType": media_type, "fileUri": image.url}}


def _retry_info(error: ProviderError, raw: bytes) -> ProviderError:
    """Fill a 429's ``retry_after_s`` from a ``google.rpc.RetryInfo`` detail if no header did."""
    if not isinstance(error, ProviderRateLimited) or error.retry_after_s is not None:
        return error
    try:
        details = json.loads(raw)["error"]["details"]
        delays = [
            d["retryDelay"] for d in details if str(d.get("@type", "")).endswith("rpc.RetryInfo")
        ]
        seconds = float(str(delays[0]).removesuffix("s"))
    except (*_SHAPE_ERRORS, json.JSONDecodeError, UnicodeDecodeError):
        return error
    return ProviderRateLimited(error.message, provider=error.provider, retry_after_s=seconds)


def _calling_config(choice: ToolChoice) -> dict[str, Any]:
    """Gemini's ``functionCallingConfig`` for ``choice``: ANY forces a call, to the
    allowed functions only when a tool is named."""
    if choice.mode is ToolChoiceMode.TOOL:
        return {"mode": "ANY", "allowedFunctionNames": [choice.tool]}
    modes = {ToolChoiceMode.REQUIRED: "ANY", ToolChoiceMode.NONE: "NONE"}
    return {"mode": modes.get(choice.mode, "AUTO")}
