"""A fake Gemini API (``POST /v1beta/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse``).

Speaks the wire format of ``generativelanguage.googleapis.com``: camelCase
``GenerateContentResponse`` objects with ``candidates``, ``usageMetadata`` and
``modelVersion``; streams of whole responses as ``data: ...`` events separated by CRLF
pairs, ending with the chunk that carries ``finishReason`` (there is no end marker);
``{"error": {"code", "message", "status", "details"}}`` bodies, with a
``google.rpc.RetryInfo`` detail on 429. Like the real API it rejects unknown fields and
requires an API key (``x-goog-api-key`` or ``?key=``).

Run alone: ``python -m tests.fakes.gemini_server --port 0`` prints the base URL.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes import common
from tests.fakes.common import Answer, BadRequest, Parsed, Turn

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_TOP_LEVEL = {
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
    "labels",
}
_GENERATION_CONFIG = {
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "stopSequences",
    "candidateCount",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseLogprobs",
    "logprobs",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "thinkingConfig",
    "responseModalities",
    "mediaResolution",
    "speechConfig",
}
SIGNATURE = "c2lnLWZha2U="  # the thoughtSignature this fake attaches to its function calls
_PART_KINDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse")


class GeminiVendor:
    name = "gemini"
    api_prefix = ""

    def routes(self, handle: Callable[..., Any]) -> list[web.RouteDef]:
        async def models(request: web.Request) -> web.StreamResponse:
            model, _, method = request.match_info["target"].rpartition(":")
            if method not in ("generateContent", "streamGenerateContent") or not model:
                raise web.HTTPNotFound()
            stream = method == "streamGenerateContent"
            if stream and request.query.get("alt") != "sse":
                raise web.HTTPBadRequest(text="this fake streams only with alt=sse")
            response: web.StreamResponse = await handle(request, model=model, stream=stream)
            return response

        return [web.post("/v1beta/models/{target}", models)]

    def check_auth(self, request: web.Request) -> BadRequest | None:
        if not (request.headers.get("x-goog-api-key") or request.query.get("key")):
            return BadRequest(
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity.",
                403,
            )
        return None

    def parse(self, body: Any, model: str | None, stream: bool) -> Parsed:
        if not isinstance(body, dict):
            raise BadRequest("Invalid JSON payload received. Expected an object.")
        body = _camel(body)
        _known(body, _TOP_LEVEL, "")
        parsed = Parsed(model=model or "", stream=stream)
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
        system = body.get("systemInstruction")
        if system is not None:
            parsed.system = "\n".join(str(p.get("text", "")) for p in system.get("parts") or ())
        pending = 0
        for index, content in enumerate(contents):
            pending = _content(parsed, content, index, pending)
        for tool in body.get("tools") or ():
            for declaration in tool.get("functionDeclarations") or ():
                if not declaration.get("name"):
                    raise BadRequest(
                        "* GenerateContentRequest.tools.function_declarations.name: Name is empty."
                    )
                if "parameters" in declaration and "parametersJsonSchema" in declaration:
                    raise BadRequest("parameters and parametersJsonSchema are mutually exclusive")
                parsed.tools.append(str(declaration["name"]))
        _function_calling(parsed, (body.get("toolConfig") or {}).get("functionCallingConfig"))
        config = body.get("generationConfig") or {}
        _known(config, _GENERATION_CONFIG, "generation_config.")
        mime = config.get("responseMimeType")
        if mime not in (None, "text/plain", "application/json", "text/x.enum"):
            raise BadRequest(
                f"* GenerateContentRequest.generation_config.response_mime_type: unsupported {mime}"
            )
        schema = config.get("responseJsonSchema", config.get("responseSchema"))
        if schema is not None and mime != "application/json":
            raise BadRequest(
                "response_mime_type must be application/json when a response schema is set"
            )
        parsed.json_mode, parsed.schema = mime == "application/json", schema
        parsed.logprobs = bool(config.get("responseLogprobs"))
        for key, name in (
            ("maxOutputTokens", "max_tokens"),
            ("temperature", "temperature"),
            ("topP", "top_p"),
            ("stopSequences", "stop"),
        ):
            if config.get(key) is not None:
                parsed.params[name] = config[key]
        return parsed

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": status,
            "message": message or _default_message(status),
            "status": _STATUS.get(status, "UNKNOWN"),
        }
        if status == 429:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": "17s",
                }
            ]
        return {"error": error}

    def error_headers(self, status: int) -> dict[str, str]:
        return {}

    def call_id(self, index: int) -> str:
        return ""  # the API gives function calls no id

    def unary(self, parsed: Parsed, answer: Answer) -> dict[str, Any]:
        failed = _failed_finish(answer)
        if failed:
            return _envelope(parsed, answer, {"content": {}, "finishReason": failed, "index": 0})
        parts: list[dict[str, Any]] = [{"text": answer.text}] if answer.text else []
        parts += [_function_call(c) for c in answer.tool_calls]
        candidate: dict[str, Any] = {
            "content": {"parts": parts, "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }
        if parsed.logprobs and answer.pieces():
            candidate["avgLogprobs"] = sum(answer.logprobs()) / len(answer.pieces())
        return _envelope(parsed, answer, candidate)

    def frames(self, parsed: Parsed, answer: Answer) -> tuple[list[bytes], list[bytes]]:
        def chunk(parts: list[dict[str, Any]], final: bool) -> bytes:
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if final:
                candidate["finishReason"] = "STOP"
            return common.sse(_envelope(parsed, answer, candidate, final=final), crlf=True)

        failed = _failed_finish(answer)
        if failed:
            candidate = {"content": {}, "finishReason": failed, "index": 0}
            return [], [common.sse(_envelope(parsed, answer, candidate), crlf=True)]

        pieces = answer.pieces()
        body = [chunk([{"text": piece}], final=False) for piece in pieces[:-1]]
        last: list[dict[str, Any]] = [{"text": pieces[-1]}] if pieces else []
        if answer.tool_calls:
            body.append(chunk([_function_call(c) for c in answer.tool_calls], final=False))
        tail = [chunk(last or [{"text": ""}], final=True)]
        return body, tail

    def stream_error(self, message: str = "") -> bytes:
        return common.sse(self.error_body(503, message), crlf=True)

    def account_error(self, kind: str) -> tuple[int, dict[str, Any]]:
        if kind == "quota":  # Gemini's quota is per minute: a 429 with a retry delay
            return 429, self.error_body(429, "Resource has been exhausted (e.g. check quota).")
        body = self.error_body(400, "API key not valid. Please pass a valid API key.")
        body["error"]["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
        return 400, body


def _failed_finish(answer: Answer) -> str:
    """The finish reason of an answer that comes with no content, if it is one."""
    return "SAFETY" if answer.refused else answer.failed_finish


def _envelope(
    parsed: Parsed, answer: Answer, candidate: dict[str, Any], *, final: bool = True
) -> dict[str, Any]:
    """A ``GenerateContentResponse`` around one candidate (usage unless it is withheld)."""
    data: dict[str, Any] = {"candidates": [candidate]}
    if answer.usage_reported:
        data["usageMetadata"] = _usage(answer, final=final)
    data["modelVersion"] = parsed.model
    data["responseId"] = "fake-response-0001"
    return data


def _camel(value: Any) -> Any:
    """The API accepts snake_case and camelCase field names alike; normalise to camelCase."""
    if isinstance(value, list):
        return [_camel(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        name = re.sub(r"_([a-z])", lambda m: m[1].upper(), key)
        keep = name in (
            "args",
            "response",
            "parametersJsonSchema",
            "responseJsonSchema",
            "parameters",
            "responseSchema",
        )
        out[name] = item if keep else _camel(item)
    return out


def _known(section: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in section:
        if key not in allowed:
            raise BadRequest(
                f'Invalid JSON payload received. Unknown name "{key}" at '
                f"'{where or 'request'}': Cannot find field."
            )


def _content(parsed: Parsed, content: Any, index: int, pending: int) -> int:
    """Read one content; returns how many function calls await a response."""
    role = content.get("role") or "user"
    if role not in ("user", "model"):
        raise BadRequest(f"* contents[{index}].role: Please use a valid role: user, model.")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise BadRequest(
            f"* GenerateContentRequest.contents[{index}].parts: contents.parts must not be empty."
        )
    turn = Turn("assistant" if role == "model" else "user")
    results: list[dict[str, str]] = []
    texts: list[str] = []
    for part in parts:
        kinds = [k for k in _PART_KINDS if k in part]
        if len(kinds) != 1:
            raise BadRequest(
                f"* contents[{index}].parts: each part holds exactly one of {_PART_KINDS}"
            )
        kind = kinds[0]
        if kind == "text":
            texts.append(str(part["text"]))
        elif kind == "inlineData":
            data = part["inlineData"]
            if not data.get("mimeType") or not data.get("data"):
                raise BadRequest(
                    f"* contents[{index}].parts.inline_data: mime_type and data are required"
                )
            turn.images.append({"media_type": str(data["mimeType"]), "data": str(data["data"])})
        elif kind == "fileData":
            turn.images.append({"url": str(part["fileData"].get("fileUri", ""))})
        elif kind == "functionCall" and role == "model":
            call = part["functionCall"]
            if not call.get("name"):
                raise BadRequest(f"* contents[{index}].parts.function_call.name: Name is empty.")
            turn.tool_calls.append(
                {
                    "id": call.get("id", ""),
                    "name": call["name"],
                    "arguments": call.get("args") or {},
                    "signature": part.get("thoughtSignature", ""),
                }
            )
        elif kind == "functionResponse" and role == "user":
            response = part["functionResponse"]
            if not response.get("name") or not isinstance(response.get("response"), dict):
                raise BadRequest(
                    f"* contents[{index}].function_response: name and response object required"
                )
            value = response["response"]
            text = value.get("output", value) if set(value) == {"output"} else value
            results.append(
                {
                    "id": str(response["name"]),
                    "content": text if isinstance(text, str) else json.dumps(text),
                }
            )
        else:
            raise BadRequest(f"* contents[{index}].parts: {kind} is not allowed in a {role} turn")
    if pending and len(results) != pending:
        raise BadRequest(
            "Please ensure that the number of function response parts is equal to the number "
            "of function call parts of the function call turn."
        )
    turn.text = "\n".join(texts)
    if results:
        parsed.turns.append(Turn("tool", tool_results=results))
    if texts or turn.images or turn.tool_calls:
        parsed.turns.append(turn)
    return len(turn.tool_calls)


def _function_call(call: dict[str, Any]) -> dict[str, Any]:
    return {
        "functionCall": {"name": call["name"], "args": call["arguments"]},
        "thoughtSignature": SIGNATURE,
    }


def _usage(answer: Answer, *, final: bool) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "promptTokenCount": answer.input_tokens,
        "totalTokenCount": answer.input_tokens + (answer.output_tokens if final else 0),
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": answer.input_tokens}],
    }
    if answer.cached_tokens:
        usage["cachedContentTokenCount"] = answer.cached_tokens
    if final:
        usage["candidatesTokenCount"] = answer.output_tokens
    return usage


def _default_message(status: int) -> str:
    return {
        400: "Request contains an invalid argument.",
        401: "Request had invalid authentication credentials.",
        403: "The caller does not have permission",
        404: "models/unknown is not found for API version v1beta.",
        429: "Resource has been exhausted (e.g. check quota).",
        500: "An internal error has occurred. Please retry or report.",
        503: "The model is overloaded. Please try again later.",
    }.get(status, "Unknown error.")


VENDOR = GeminiVendor()


def serve(**options: Any) -> contextlib.AbstractAsyncContextManager[common.Running]:
    """Run the fake in this event loop: ``async with serve() as fake: fake.base_url``."""
    return common.serve(VENDOR, **options)


def _function_calling(parsed: Parsed, config: Any) -> None:
    """Read ``toolConfig.functionCallingConfig``: AUTO, ANY (optionally limited to
    ``allowedFunctionNames``), NONE."""
    if config is None:
        return
    where = "* GenerateContentRequest.tool_config.function_calling_config"
    mode = config.get("mode", "MODE_UNSPECIFIED")
    if mode not in ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"):
        raise BadRequest(f"{where}.mode: invalid value {mode!r}")
    allowed = config.get("allowedFunctionNames") or []
    if allowed and mode not in ("ANY", "VALIDATED"):
        raise BadRequest(
            f"{where}.allowed_function_names: only set allowed_function_names when mode is ANY"
        )
    for name in allowed:
        if name not in parsed.tools:
            raise BadRequest(f"{where}.allowed_function_names: function {name!r} not declared")
    if mode == "ANY":
        parsed.tool_choice = "required"
        if len(allowed) == 1:
            parsed.forced_tool = str(allowed[0])
    elif mode == "NONE":
        parsed.tool_choice = "none"


if __name__ == "__main__":
    common.main(VENDOR)
