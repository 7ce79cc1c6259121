"""A fake OpenAI API: chat completions (``POST /v1/chat/completions``) and embeddings
(``POST /v1/embeddings``).

Speaks the wire format of ``api.openai.com``: ``chat.completion`` objects,
``chat.completion.chunk`` SSE events ending in ``data: [DONE]`` (with a usage-only last
chunk when ``stream_options.include_usage`` is set), and ``{"error": {"message", "type",
"param", "code"}}`` bodies. Behaviours are listed in :mod:`tests.fakes.common`; the ones
that are not about a chat answer (``slow``, ``error``, ``ratelimit``, ``drop``, ``quota``,
``bad-key``, ``malformed``, ``no-usage``) apply to embeddings too.

Embeddings: ``{"model", "input": str | [str] | [int] | [[int]], "encoding_format"?:
"float" | "base64", "dimensions"?, "user"?}`` (anything else is refused as the API
refuses it) answers ``{"object": "list", "data": [{"object": "embedding", "index",
"embedding"}], "model", "usage": {"prompt_tokens", "total_tokens"}}``. A vector is a
hashed bag of the input's lowercased words (:func:`embed`): deterministic, of unit length
as OpenAI's are, and texts sharing words are close. 1,536 dimensions (3,072 for
``text-embedding-3-large``); ``dimensions`` asks for fewer, up to the model's own, as the
text-embedding-3 models take it (``text-embedding-ada-002`` refuses it). ``base64`` is
little-endian float32, what the official SDKs ask for by default.

Run alone: ``python -m tests.fakes.openai_server --port 0 --latency-ms 20`` prints the
base URL (ending in ``/v1``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import re
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web

from tests.fakes import common
from tests.fakes.common import Answer, BadRequest, Parsed, Turn

_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-fake."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_ROLES = {"system", "developer", "user", "assistant", "tool"}
_CREATED = 1_700_000_000
# What the routes hand the engine as the "model" of an embeddings request, so that parse
# and unary know the endpoint (the engine passes it through; the real model is the body's).
_EMBEDDINGS = "\0embeddings"
_EMBEDDING_KEYS = {"model", "input", "encoding_format", "dimensions", "user"}
_MAX_INPUTS = 2048
_MAX_INPUT_TOKENS = 8192
_MAX_REQUEST_TOKENS = 300_000
_INVALID_INPUT = (
    "'$.input' is invalid. Please check the API reference: "
    "https://platform.openai.com/docs/api-reference."
)


_CALLS = itertools.count()  # tool-call ids, unique for the server's life


class OpenAIVendor:
    name = "openai"
    api_prefix = "/v1"

    def routes(self, handle: Callable[..., Any]) -> list[web.RouteDef]:
        async def chat(request: web.Request) -> web.StreamResponse:
            response: web.StreamResponse = await handle(request)
            return response

        async def embeddings(request: web.Request) -> web.StreamResponse:
            response: web.StreamResponse = await handle(request, model=_EMBEDDINGS)
            return response

        return [web.post("/v1/chat/completions", chat), web.post("/v1/embeddings", embeddings)]

    def check_auth(self, request: web.Request) -> BadRequest | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not token:
            return BadRequest("You didn't provide an API key.", 401)
        return None

    def parse(self, body: Any, model: str | None, stream: bool) -> Parsed:
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        if model == _EMBEDDINGS:
            return _parse_embeddings(body)
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise BadRequest("you must provide a model parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("[] is too short - 'messages'")
        stream = bool(body.get("stream"))
        if "stream_options" in body and not stream:
            raise BadRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled."
            )
        parsed = Parsed(model=body["model"], stream=stream)
        pending: set[str] = set()
        for index, message in enumerate(messages):
            pending = _message(parsed, message, index, pending)
        if pending:
            raise BadRequest(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                f"responding to each 'tool_call_id'. Missing: {sorted(pending)}"
            )
        for tool in body.get("tools") or ():
            function = tool.get("function") if isinstance(tool, dict) else None
            if tool.get("type") != "function" or not isinstance(function, dict):
                raise BadRequest("Invalid value for 'tools[].type': expected 'function'.")
            if not function.get("name"):
                raise BadRequest("Missing required parameter: 'tools[].function.name'.")
            parsed.tools.append(str(function["name"]))
        _tool_choice(parsed, body.get("tool_choice"))
        fmt = body.get("response_format") or {"type": "text"}
        if fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema") or {}
            if not spec.get("name") or not isinstance(spec.get("schema"), dict):
                raise BadRequest("Missing required parameter: 'response_format.json_schema.name'.")
            parsed.json_mode, parsed.schema = True, spec["schema"]
        elif fmt.get("type") == "json_object":
            parsed.json_mode = True
        elif fmt.get("type") != "text":
            raise BadRequest(f"Invalid value for 'response_format.type': {fmt.get('type')!r}")
        parsed.logprobs = bool(body.get("logprobs"))
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        for key, value in (
            ("max_tokens", limit),
            ("temperature", body.get("temperature")),
            ("top_p", body.get("top_p")),
            ("stop", body.get("stop")),
        ):
            if value is not None:
                parsed.params[key] = value
        parsed.params["include_usage"] = bool(
            (body.get("stream_options") or {}).get("include_usage")
        )
        return parsed

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind, code, default = _ERRORS.get(status, ("server_error", None, "Unexpected error."))
        return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}

    def error_headers(self, status: int) -> dict[str, str]:
        return {"x-request-id": "req_fake"}

    def call_id(self, index: int) -> str:
        # Unique across responses, as the real API's are: a conversation that sends an
        # earlier turn's calls back never holds the same id twice.
        return f"call_fake{next(_CALLS):06d}{index:02d}"

    def unary(self, parsed: Parsed, answer: Answer) -> dict[str, Any]:
        if "embeddings" in parsed.params:
            return _embeddings(parsed, answer)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if answer.refused else answer.text or None,
            "refusal": answer.text if answer.refused else None,
            "annotations": [],
        }
        if answer.tool_calls:
            message["tool_calls"] = [_call(c) for c in answer.tool_calls]
        return {
            **_envelope(parsed, "chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": _logprobs(answer) if parsed.logprobs else None,
                    "finish_reason": answer.finish,
                }
            ],
            **({"usage": _usage(answer)} if answer.usage_reported else {}),
        }

    def frames(self, parsed: Parsed, answer: Answer) -> tuple[list[bytes], list[bytes]]:
        include_usage = bool(parsed.params.get("include_usage")) and answer.usage_reported
        logprobs = answer.logprobs()

        def chunk(delta: dict[str, Any], finish: str | None = None, index: int = -1) -> bytes:
            data = {
                **_envelope(parsed, "chat.completion.chunk"),
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": _piece_logprob(delta, logprobs[index])
                        if parsed.logprobs and index >= 0
                        else None,
                        "finish_reason": finish,
                    }
                ],
            }
            if include_usage:
                data["usage"] = None
            return common.sse(data)

        body = [chunk({"role": "assistant", "content": "", "refusal": None})]
        field = "refusal" if answer.refused else "content"
        body += [chunk({field: piece}, index=i) for i, piece in enumerate(answer.pieces())]
        for index, call in enumerate(answer.tool_calls):
            arguments = common.arguments_text(call)
            opening = {"index": index, "id": call["id"], "type": "function"}
            body.append(
                chunk(
                    {
                        "tool_calls": [
                            {**opening, "function": {"name": call["name"], "arguments": ""}}
                        ]
                    }
                )
            )
            for start in range(0, len(arguments), 8):
                piece = {"index": index, "function": {"arguments": arguments[start : start + 8]}}
                body.append(chunk({"tool_calls": [piece]}))
        tail = [chunk({}, answer.finish)]
        if include_usage:
            tail.append(
                common.sse(
                    {
                        **_envelope(parsed, "chat.completion.chunk"),
                        "choices": [],
                        "usage": _usage(answer),
                    }
                )
            )
        tail.append(b"data: [DONE]\n\n")
        return body, tail

    def stream_error(self, message: str = "") -> bytes:
        return common.sse(self.error_body(500, message))

    def account_error(self, kind: str) -> tuple[int, dict[str, Any]]:
        if kind == "quota":
            message = "You exceeded your current quota, please check your plan and billing details."
            error = {"message": message, "type": "insufficient_quota", "param": None}
            return 429, {"error": {**error, "code": "insufficient_quota"}}
        return 401, self.error_body(401, "")


def _message(parsed: Parsed, message: Any, index: int, pending: set[str]) -> set[str]:
    """Read one message; returns the tool call ids still waiting for a tool message."""
    if not isinstance(message, dict) or message.get("role") not in _ROLES:
        raise BadRequest(f"Invalid value for 'messages[{index}].role'.")
    role = message["role"]
    if role == "tool":
        call_id = message.get("tool_call_id")
        if call_id not in pending:
            raise BadRequest(
                "Invalid parameter: messages with role 'tool' must be a response to a "
                "preceeding message with 'tool_calls'."
            )
        result = {"id": str(call_id), "content": _text(message.get("content"), index, False)[0]}
        if parsed.turns and parsed.turns[-1].role == "tool":
            parsed.turns[-1].tool_results.append(result)
        else:
            parsed.turns.append(Turn("tool", tool_results=[result]))
        return pending - {call_id}
    if pending:
        raise BadRequest(f"messages[{index}]: expected tool messages for {sorted(pending)}")
    content = message.get("content")
    if content is None and not (role == "assistant" and message.get("tool_calls")):
        raise BadRequest(f"Invalid value for 'messages[{index}].content': expected a string.")
    text, images = _text(content, index, role == "user")
    if role in ("system", "developer"):
        parsed.system = f"{parsed.system}\n\n{text}" if parsed.system else text
        return set()
    turn = Turn(role, text=text, images=images)
    for j, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        if not call.get("id") or call.get("type") != "function" or not function.get("name"):
            raise BadRequest(f"Invalid 'messages[{index}].tool_calls': id, type, function needed.")
        if len(str(call["id"])) > 40:
            raise BadRequest(
                f"Invalid 'messages[{index}].tool_calls[{j}].id': string too long. Expected a "
                f"string with maximum length 40, but got a string with length "
                f"{len(str(call['id']))} instead."
            )
        if not isinstance(function.get("arguments"), str):
            raise BadRequest(
                f"'messages[{index}].tool_calls[].function.arguments' must be a string."
            )
        try:
            arguments = json.loads(function["arguments"] or "{}")
        except json.JSONDecodeError:
            arguments = function["arguments"]
        turn.tool_calls.append({"id": call["id"], "name": function["name"], "arguments": arguments})
    parsed.turns.append(turn)
    return {c["id"] for c in turn.tool_calls}


def _text(content: Any, index: int, allow_images: bool) -> tuple[str, list[dict[str, str]]]:
    if content is None or isinstance(content, str):
        return content or "", []
    if not isinstance(content, list):
        raise BadRequest(f"Invalid type for 'messages[{index}].content'.")
    texts: list[str] = []
    images: list[dict[str, str]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and allow_images:
            url = str((part.get("image_url") or {}).get("url") or "")
            if url.startswith("data:"):
                header, _, data = url.partition(",")
                if not header.endswith(";base64"):
                    raise BadRequest("Invalid image data URL: expected base64.")
                images.append({"media_type": header[5:].split(";")[0], "data": data})
            elif url.startswith(("http://", "https://")):
                images.append({"url": url})
            else:
                raise BadRequest("Invalid 'image_url.url': expected a URL or a base64 data URL.")
        else:
            raise BadRequest(f"Invalid content part type in 'messages[{index}].content': {kind!r}")
    return "\n".join(texts), images


def _envelope(parsed: Parsed, obj: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake0001",
        "object": obj,
        "created": _CREATED,
        "model": parsed.model,
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }


def _call(call: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": call["id"],
        "type": "function",
        "function": {"name": call["name"], "arguments": common.arguments_text(call)},
    }


def _usage(answer: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
        "prompt_tokens_details": {"cached_tokens": answer.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _token(piece: str, logprob: float) -> dict[str, Any]:
    return {"token": piece, "logprob": logprob, "bytes": list(piece.encode()), "top_logprobs": []}


def _logprobs(answer: Answer) -> dict[str, Any]:
    tokens = [_token(p, lp) for p, lp in zip(answer.pieces(), answer.logprobs(), strict=True)]
    return {"content": tokens, "refusal": None}


def _piece_logprob(delta: dict[str, Any], logprob: float) -> dict[str, Any]:
    return {"content": [_token(str(delta.get("content", "")), logprob)], "refusal": None}


def _parse_embeddings(body: dict[str, Any]) -> Parsed:
    """Read an embeddings request, refusing what the API refuses."""
    unknown = sorted(set(body) - _EMBEDDING_KEYS)
    if unknown:
        raise BadRequest(f"Unrecognized request argument supplied: {unknown[0]}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter")
    if "input" not in body:
        raise BadRequest("'input' is a required property")
    inputs = _embedding_inputs(body["input"])
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise BadRequest(f"{encoding!r} is not one of ['float', 'base64'] - 'encoding_format'")
    native = 3072 if model.startswith("text-embedding-3-large") else 1536
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if model.startswith("text-embedding-ada"):
            raise BadRequest("This model does not support specifying dimensions.")
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
            raise BadRequest(f"Invalid value for 'dimensions' = {dimensions}. Must be >= 1.")
        if dimensions > native:
            raise BadRequest(
                f"Invalid value for 'dimensions' = {dimensions}. Must be less than or equal "
                f"to {native}."
            )
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise BadRequest("Invalid type for 'user': expected a string.")
    total = 0
    for text in inputs:
        tokens = _tokens(text)
        if tokens > _MAX_INPUT_TOKENS:
            raise BadRequest(
                f"This model's maximum context length is {_MAX_INPUT_TOKENS} tokens, however "
                f"you requested {tokens} tokens ({tokens} in your prompt; 0 for the "
                "completion). Please reduce your prompt; or completion length."
            )
        total += tokens
    if total > _MAX_REQUEST_TOKENS:
        raise BadRequest(f"Requested {total} tokens, max {_MAX_REQUEST_TOKENS} tokens per request")
    parsed = Parsed(model=model, stream=False, turns=[Turn("user", text=t) for t in inputs])
    parsed.params["embeddings"] = {
        "count": len(inputs),
        "encoding_format": encoding,
        "dimensions": dimensions or native,
        "prompt_tokens": max(1, total),
    }
    return parsed


def _embedding_inputs(value: Any) -> list[str]:
    """The texts of ``input``: a string, strings, a token array or token arrays."""
    if isinstance(value, str):
        values: list[Any] = [value]
    elif isinstance(value, list) and value and all(_is_token(t) for t in value):
        values = [" ".join(str(t) for t in value)]  # one token array
    elif isinstance(value, list) and 0 < len(value) <= _MAX_INPUTS:
        values = [
            " ".join(str(t) for t in v)
            if isinstance(v, list) and v and all(_is_token(t) for t in v)
            else v
            for v in value
        ]
    else:
        raise BadRequest(_INVALID_INPUT)
    if not all(isinstance(v, str) and v for v in values):
        raise BadRequest(_INVALID_INPUT)
    return values


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tokens(text: str) -> int:
    """The fake's token count of a text: its words (at least one)."""
    return max(1, len(text.split()))


def embed(text: str, dimensions: int = 1536) -> list[float]:
    """The fake's embedding of ``text``: each lowercased word adds ±1 at a hashed position;
    unit length. A text without words gets the first unit vector."""
    vector = [0.0] * dimensions
    for word in re.findall(r"\w+", text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "little") % dimensions
        vector[slot] += 1.0 if digest[4] & 1 else -1.0
    length = math.sqrt(sum(x * x for x in vector))
    if length == 0:
        vector[0], length = 1.0, 1.0
    return [x / length for x in vector]


def _embeddings(parsed: Parsed, answer: Answer) -> dict[str, Any]:
    spec = parsed.params["embeddings"]
    data = []
    for index, turn in enumerate(parsed.turns):
        vector = embed(turn.text, spec["dimensions"])
        encoded: list[float] | str = vector
        if spec["encoding_format"] == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = spec["prompt_tokens"]
    body: dict[str, Any] = {"object": "list", "data": data, "model": parsed.model}
    if answer.usage_reported:
        body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return body


VENDOR = OpenAIVendor()


def serve(**options: Any) -> contextlib.AbstractAsyncContextManager[common.Running]:
    """Run the fake in this event loop: ``async with serve() as fake: fake.base_url``."""
    return common.serve(VENDOR, **options)


@contextlib.contextmanager
def serve_in_thread(**options: Any) -> Iterator[common.Running]:
    """Run the fake on its own thread and event loop: ``with serve_in_thread() as fake``.

    For code under test that blocks the caller's event loop while it calls the fake (the
    server embeds its example utterances synchronously as it starts).
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-openai", daemon=True)
    thread.start()
    server = common.serve(VENDOR, **options)
    try:
        running = asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(10)
        try:
            yield running
        finally:
            asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _tool_choice(parsed: Parsed, choice: Any) -> None:
    """Read ``tool_choice`` as the API does: a mode string or a named function."""
    if choice is None:
        return
    if not parsed.tools:
        raise BadRequest(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified."
        )
    if choice in ("none", "auto", "required"):
        parsed.tool_choice = choice
        return
    function = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(function, dict) or choice.get("type") != "function":
        raise BadRequest("Invalid value for 'tool_choice': expected 'none', 'auto', 'required'.")
    name = function.get("name")
    if name not in parsed.tools:
        raise BadRequest(f"Invalid value for 'tool_choice': no function named {name!r} in 'tools'.")
    parsed.forced_tool = str(name)


if __name__ == "__main__":
    common.main(VENDOR)
