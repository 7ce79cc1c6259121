"""OpenAI chat-completions JSON ⇄ Quorum's domain types.

:func:`parse_chat_request` validates a request body field by field — with the limits the
gRPC front door applies — and names each bad field by its OpenAI path (``temperature``,
``messages[2].content[1].image_url.url``, ``tools[0].function.parameters``); every
problem is reported at once as an :class:`~quorum.server.errors.InvalidRequest` (the
first :data:`~quorum.server.service.status.MAX_VIOLATIONS` of them, and how many there
were). Types are OpenAI's, strictly: a boolean field takes ``true`` or ``false`` (not
``0`` or ``""``), an integer field an integer (not ``1.0``, not ``true``, though Python
counts ``True == 1``), and an object only the keys OpenAI defines for it. A field Quorum
accepts and ignores (``seed``, ``metadata``, ...) is checked all the same, as OpenAI
checks it: ``"seed": "x"`` is a 400, not silently dropped.
:func:`completion_body` builds the ``chat.completion`` answer from a
:class:`~quorum.server.domain.RouteResult`.
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import field
from typing import Any

from quorum.server import domain as d
from quorum.server.catalog import Catalog
from quorum.server.conversation import tool_turn_problems
from quorum.server.errors import FieldViolation, InvalidRequest, NotFound
from quorum.server.execute.gate import MAX_SCHEMA_DEPTH, schema_problem
from quorum.server.frontdoor import naming
from quorum.server.frontdoor.account import account_json
from quorum.server.frontdoor.errors import Violations
from quorum.server.names import (
    IMAGE_TYPES,
    MAX_CONTENT_CHARS,
    MAX_IMAGE_BYTES,
    MAX_JSON_DEPTH,
    TOOL_NAME,
    base64_size,
    json_object_problem,
    nests_deeper,
)
from quorum.server.policy import RoutingPolicy
from quorum.server.values import value_type

MAX_TOKENS = 1_000_000
MAX_STOP = 4
MAX_TOOLS = 128
_ROLES = {
    "system": d.Role.SYSTEM,
    "developer": d.Role.SYSTEM,
    "user": d.Role.USER,
    "assistant": d.Role.ASSISTANT,
    "tool": d.Role.TOOL,
}
_MESSAGE_KEYS = {
    d.Role.SYSTEM: {"role", "content", "name"},
    d.Role.USER: {"role", "content", "name"},
    d.Role.ASSISTANT: {"role", "content", "name", "tool_calls", "refusal"},
    d.Role.TOOL: {"role", "content", "tool_call_id"},
}
# The ignored fields' limits, as OpenAI documents them.
PENALTY = 2.0  # presence_penalty, frequency_penalty: within [-2, 2]
SEED = 2**63  # an int64: within [-2**63, 2**63 - 1]
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
LOGIT_BIAS = 100  # within [-100, 100]
# The SDK's (its OpenAPI spec's) list; "fast" is a request-side alias of "priority".
SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority", "fast")
CACHE_RETENTIONS = ("in_memory", "24h")
MAX_SAFETY_IDENTIFIER_CHARS = 128
# Recognised but not supported: a clear error beats a silently different answer.
UNSUPPORTED = {
    "functions": "use tools",
    "function_call": "use tool_choice",
    "audio": "audio output is not supported",
    "prediction": "predicted outputs are not supported",
    "reasoning_effort": "not supported; choose a model or tier instead",
    "web_search_options": "web search is not supported",
    "verbosity": "not supported",
    "moderation": "moderation is not supported",
}
HANDLED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "n",
        "tools",
        "tool_choice",
        "response_format",
        "logprobs",
        "top_logprobs",
        "modalities",
        "quorum",
    }
)
# stream_options keys OpenAI defines. include_obfuscation (padding chunks against
# size side channels) is accepted and not done: Quorum's chunks carry no padding.
STREAM_OPTIONS = ("include_usage", "include_obfuscation")
_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
# A lone UTF-16 surrogate: JSON's "\ud800" escape (or surrogate bytes, which Python's
# JSON decoder lets through) gives one, and no UTF-8 encoder, so no provider, can send it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SURROGATE_TEXT = "contains a lone UTF-16 surrogate (an invalid Unicode escape such as \\ud800)"
MAX_SURROGATE_REPORTS = 8
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)(?:;[\w=.+-]+)*;base64,", re.ASCII)


@value_type
class ChatRequest:
    """A validated ``POST /v1/chat/completions``."""

    route: d.RouteRequest
    model: str
    stream: bool = False
    include_usage: bool = False
    origins: Mapping[str, str] = field(default_factory=dict)


def _is_integer(value: Any) -> bool:
    """A JSON integer: ``1`` but not ``1.0``, and not ``true`` (a bool is an int in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _flag(body: Mapping[str, Any], key: str, v: Violations, path: str = "") -> bool:
    """A boolean field (at ``path``, by default ``key``), ``null`` or absent meaning
    false; anything but a JSON boolean (``0``, ``""``, ``"true"``) is refused, as OpenAI
    refuses it, rather than read as truthy or falsy."""
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        v.add(path or key, "must be a boolean")
        return False
    return value


def _is_number(value: Any) -> bool:
    """A JSON number other than NaN or ±Infinity; an int of any size (``math.isfinite``
    would overflow on one too large for a float)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _surrogates(body: Any) -> list[FieldViolation]:
    """Where ``body``'s strings (keys included) hold a lone surrogate, as field paths in
    document order (``messages[0].content``); at most :data:`MAX_SURROGATE_REPORTS`."""
    found: list[FieldViolation] = []
    # (parent path, key or index, value); a path is built only where it is needed.
    stack: list[tuple[str, str | int | None, Any]] = [("", None, body)]
    while stack and len(found) < MAX_SURROGATE_REPORTS:
        parent, key, value = stack.pop()
        if isinstance(value, str):
            if _has_surrogate(value):
                found.append(FieldViolation(_path(parent, key), _SURROGATE_TEXT))
            continue
        if isinstance(value, dict):
            path = _path(parent, key)
            children: list[tuple[str, str | int | None, Any]] = []
            for name, item in value.items():
                if _has_surrogate(name):
                    found.append(
                        FieldViolation(path or "body", f"has a key that {_SURROGATE_TEXT}")
                    )
                else:
                    children.append((path, name, item))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            path = _path(parent, key)
            stack.extend((path, i, value[i]) for i in range(len(value) - 1, -1, -1))
    return found[:MAX_SURROGATE_REPORTS]


def _path(parent: str, key: str | int | None) -> str:
    if key is None:
        return parent
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _image(raw: Any, path: str, v: Violations) -> d.ImagePart | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("url"), str):
        v.add(path, "must be an object with a url")
        return None
    url: str = raw["url"]
    detail = raw.get("detail")
    if detail is not None and detail not in ("auto", "low", "high"):
        v.add(f"{path}.detail", "must be auto, low or high")
    if url.startswith(("https://", "http://")):
        return d.ImagePart(url=url)
    match = _DATA_URL.match(url)
    if not match:
        v.add(f"{path}.url", "must be an http(s) URL or a data:image/...;base64, URL")
        return None
    if match["type"] not in IMAGE_TYPES:
        v.add(f"{path}.url", f"image type must be one of {', '.join(sorted(IMAGE_TYPES))}")
    size = (len(url) - match.end()) * 3 // 4
    if size > MAX_IMAGE_BYTES:
        v.add(f"{path}.url", f"image is about {size} bytes, limit {MAX_IMAGE_BYTES}")
    else:
        try:
            base64_size(url[match.end() :])
        except ValueError as exc:
            v.add(f"{path}.url", str(exc))
    return d.ImagePart(url=url)


def _content(
    raw: Any, path: str, role: d.Role | None, v: Violations
) -> tuple[str, tuple[d.ContentPart, ...]]:
    if raw is None:
        return "", ()
    if isinstance(raw, str):
        return raw, ()
    if not isinstance(raw, list):
        v.add(path, "must be a string or an array of content parts")
        return "", ()
    parts: list[d.ContentPart] = []
    for j, part in enumerate(raw):
        ppath = f"{path}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(d.ContentPart(text=part["text"]))
        elif (
            kind == "refusal" and role is d.Role.ASSISTANT and isinstance(part.get("refusal"), str)
        ):
            parts.append(d.ContentPart(text=part["refusal"]))
        elif kind == "image_url" and role is d.Role.USER:
            image = _image(part.get("image_url"), f"{ppath}.image_url", v)
            if image is not None:
                parts.append(d.ContentPart(image=image))
        elif kind in ("text", "refusal", "image_url"):
            v.add(ppath, f"a {kind} part is not valid here")
        else:
            v.add(
                f"{ppath}.type",
                f"unsupported content part {kind!r}; text and image_url (user) are supported",
            )
    return "", tuple(parts)


def _tool_calls(raw: Any, path: str, v: Violations) -> tuple[d.ToolCall, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        v.add(path, "must be an array")
        return ()
    calls: list[d.ToolCall] = []
    for j, call in enumerate(raw):
        cpath = f"{path}[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            v.add(f"{cpath}.function", "is required")
            continue
        if call.get("type", "function") != "function":
            v.add(f"{cpath}.type", "must be function")
        call_id, name = call.get("id"), function.get("name")
        arguments = function.get("arguments", "")
        if not isinstance(call_id, str) or not call_id:
            v.add(f"{cpath}.id", "is required")
        elif not call_id.isprintable():
            v.add(f"{cpath}.id", "must be printable: no control characters or line breaks")
        if not isinstance(name, str) or not name:
            v.add(f"{cpath}.function.name", "is required")
        elif not TOOL_NAME.fullmatch(name):  # the rule of tools[i].function.name
            v.add(f"{cpath}.function.name", "must be 1-64 letters, digits, '_' or '-'")
        problem = (
            "must be a JSON object in a string"
            if not isinstance(arguments, str)
            else arguments and json_object_problem(arguments, "a JSON object in a string")
        )
        if problem:
            v.add(f"{cpath}.function.arguments", problem)
            arguments = ""
        calls.append(d.ToolCall(str(call_id or ""), str(name or ""), arguments))
    return tuple(calls)


def _message(raw: Any, path: str, v: Violations) -> d.Message | None:
    if not isinstance(raw, dict):
        v.add(path, "must be an object")
        return None
    role_name = raw.get("role")
    role = _ROLES.get(role_name) if isinstance(role_name, str) else None
    if role is None:
        v.add(f"{path}.role", "must be one of system, developer, user, assistant, tool")
        return None
    for key in raw.keys() - _MESSAGE_KEYS[role]:
        v.add(f"{path}.{key}", f"not supported on a {raw['role']} message")
    content, parts = _content(raw.get("content"), f"{path}.content", role, v)
    calls = _tool_calls(raw.get("tool_calls"), f"{path}.tool_calls", v)
    name = raw.get("name", "")
    if not isinstance(name, str):
        v.add(f"{path}.name", "must be a string")
        name = ""
    tool_call_id = raw.get("tool_call_id", "")
    if role is d.Role.TOOL and (not isinstance(tool_call_id, str) or not tool_call_id):
        v.add(f"{path}.tool_call_id", "is required for a tool message")
        tool_call_id = ""
    message = d.Message(role, content, parts, calls, tool_call_id, name)
    chars = len(message.text)
    if chars > MAX_CONTENT_CHARS:
        v.add(f"{path}.content", f"is {chars} characters, limit {MAX_CONTENT_CHARS}")
    if not content and not parts and not calls:
        v.add(f"{path}.content", "is empty: set content or tool_calls")
    return message


def _tools(raw: Any, v: Violations) -> tuple[d.Tool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        v.add("tools", "must be an array")
        return ()
    if len(raw) > MAX_TOOLS:
        v.add("tools", f"at most {MAX_TOOLS} tools")
    tools: list[d.Tool] = []
    seen: set[str] = set()
    for i, tool in enumerate(raw):
        path = f"tools[{i}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function":
            v.add(f"{path}.type", "must be function")
            continue
        if not isinstance(function, dict):
            v.add(f"{path}.function", "is required")
            continue
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            v.add(f"{path}.function.name", "must be 1-64 letters, digits, '_' or '-'")
            continue
        if name in seen:
            v.add(f"{path}.function.name", f"duplicate tool name {name!r}")
        seen.add(name)
        description = function.get("description", "")
        if not isinstance(description, str):
            v.add(f"{path}.function.description", "must be a string")
            description = ""
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            v.add(f"{path}.function.parameters", "must be a JSON Schema object")
            parameters = None
        elif parameters is not None and nests_deeper(parameters, MAX_JSON_DEPTH):
            # As on gRPC: deeper than the providers' encoders go, with the request around it.
            v.add(
                f"{path}.function.parameters",
                f"nests objects and arrays more than {MAX_JSON_DEPTH} deep",
            )
            parameters = None
        schema = json.dumps(parameters) if parameters is not None else ""
        tools.append(d.Tool(name, description, schema))
    return tuple(tools)


def _tool_choice(
    raw: Any, tools: tuple[d.Tool, ...], v: Violations
) -> tuple[tuple[d.Tool, ...], d.ToolChoice]:
    """Apply ``tool_choice``: ``none`` forbids a call, ``required`` or a named function
    forces one (to one of ``tools``)."""
    if raw is None or raw == "auto":
        return tools, d.ToolChoice()
    if raw == "none":  # settled against the conversation's tool calls later
        return tools, d.ToolChoice(d.ToolChoiceMode.NONE)
    if raw == "required":
        choice = d.ToolChoice(d.ToolChoiceMode.REQUIRED)
    elif isinstance(raw, dict):
        function = raw.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if raw.get("type") != "function" or not isinstance(name, str) or not name:
            v.add("tool_choice", 'must be {"type": "function", "function": {"name": ...}}')
            return tools, d.ToolChoice()
        if name not in {t.name for t in tools}:
            v.add("tool_choice.function.name", f"{name!r} is not one of the tools")
        choice = d.ToolChoice(d.ToolChoiceMode.TOOL, name)
    else:
        v.add("tool_choice", "must be auto, none, required or a named function")
        return tools, d.ToolChoice()
    if not tools:
        v.add("tool_choice", "a tool call is required but no tools are given")
    return tools, choice


def _response_format(raw: Any, v: Violations) -> d.ResponseFormat:
    if raw is None:
        return d.ResponseFormat()
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return d.ResponseFormat()
    if kind == "json_object":
        return d.ResponseFormat(d.ResponseFormatType.JSON_OBJECT)
    if kind != "json_schema":
        v.add("response_format.type", "must be text, json_object or json_schema")
        return d.ResponseFormat()
    spec = raw.get("json_schema")
    if not isinstance(spec, dict):
        v.add("response_format.json_schema", "is required for json_schema")
        return d.ResponseFormat()
    name = spec.get("name", "")
    if not isinstance(name, str) or (name and not TOOL_NAME.fullmatch(name)):
        v.add("response_format.json_schema.name", "must be 1-64 letters, digits, '_' or '-'")
        name = ""
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        v.add("response_format.json_schema.schema", "must be a JSON Schema object")
        return d.ResponseFormat()
    if nests_deeper(schema, MAX_SCHEMA_DEPTH):  # checked before json.dumps recurses into it
        v.add("response_format.json_schema.schema", f"nests more than {MAX_SCHEMA_DEPTH} deep")
        return d.ResponseFormat()
    text = json.dumps(schema)
    problem = schema_problem(text)  # as on gRPC: size, patterns, references, loops
    if problem:
        v.add("response_format.json_schema.schema", problem)
        return d.ResponseFormat()
    return d.ResponseFormat(d.ResponseFormatType.JSON_SCHEMA, text, name)


def _stop(raw: Any, v: Violations) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        v.add("stop", "must be a string or an array of strings")
        return ()
    if len(items) > MAX_STOP:
        v.add("stop", f"at most {MAX_STOP} stop sequences")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not 1 <= len(item) <= 256:
            v.add("stop" if isinstance(raw, str) else f"stop[{i}]", "must be 1 to 256 characters")
    return tuple(s for s in items if isinstance(s, str))


def _max_tokens(body: Mapping[str, Any], v: Violations) -> int:
    found = 0
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS:
            v.add(key, f"must be an integer within [1, {MAX_TOKENS}]")
        elif found and value != found:
            v.add(key, "conflicts with max_completion_tokens; set one of them")
        else:
            found = value
    return found


def _number(
    body: Mapping[str, Any], key: str, low: float, high: float, v: Violations
) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not _is_number(value):
        v.add(key, "must be a number")
        return None
    if not low <= value <= high or (key == "top_p" and value == 0):
        v.add(key, f"must be within {'(' if key == 'top_p' else '['}{low:g}, {high:g}]")
        return None
    return float(value)


def _penalty(body: Mapping[str, Any], key: str, v: Violations) -> None:
    _number(body, key, -PENALTY, PENALTY, v)


def _seed(body: Mapping[str, Any], key: str, v: Violations) -> None:
    value = body[key]
    if not _is_integer(value):
        v.add(key, "must be an integer")
    elif not -SEED <= value < SEED:
        v.add(key, "must be a 64-bit integer")


def _string(body: Mapping[str, Any], key: str, v: Violations) -> None:
    if not isinstance(body[key], str):
        v.add(key, "must be a string")


def _safety_identifier(body: Mapping[str, Any], key: str, v: Violations) -> None:
    if not isinstance(body[key], str):
        v.add(key, "must be a string")
    elif len(body[key]) > MAX_SAFETY_IDENTIFIER_CHARS:
        v.add(key, f"is {len(body[key])} characters, limit {MAX_SAFETY_IDENTIFIER_CHARS}")


def _one_of(choices: tuple[str, ...]) -> Callable[[Mapping[str, Any], str, Violations], None]:
    """The check of a field that takes one of ``choices``."""

    def check(body: Mapping[str, Any], key: str, v: Violations) -> None:
        if not isinstance(body[key], str) or body[key] not in choices:
            v.add(key, f"must be one of {', '.join(choices)}")

    return check


def _object(body: Mapping[str, Any], key: str, v: Violations) -> None:
    if not isinstance(body[key], dict):
        v.add(key, "must be an object")


def _metadata(body: Mapping[str, Any], key: str, v: Violations) -> None:
    """An object of up to 16 string values, keys up to 64 characters, values 512."""
    raw = body[key]
    if not isinstance(raw, dict):
        v.add(key, "must be an object of string values")
        return
    if len(raw) > MAX_METADATA_KEYS:
        v.add(key, f"has {len(raw)} keys, limit {MAX_METADATA_KEYS}")
        return
    for name, value in raw.items():
        path = f"{key}.{name}"
        if len(name) > MAX_METADATA_KEY_CHARS:
            v.add(path, f"key is {len(name)} characters, limit {MAX_METADATA_KEY_CHARS}")
        if not isinstance(value, str):
            v.add(path, "must be a string")
        elif len(value) > MAX_METADATA_VALUE_CHARS:
            v.add(path, f"is {len(value)} characters, limit {MAX_METADATA_VALUE_CHARS}")


def _logit_bias(body: Mapping[str, Any], key: str, v: Violations) -> None:
    """An object mapping token ids (``"50256"``) to biases within [-100, 100]."""
    raw = body[key]
    if not isinstance(raw, dict):
        v.add(key, "must be an object mapping token ids to biases")
        return
    for token, bias in raw.items():
        if not (token.isascii() and token.isdigit()):
            v.add(f"{key}.{token}", "must be a token id: a non-negative integer")
        elif not _is_number(bias) or not -LOGIT_BIAS <= bias <= LOGIT_BIAS:
            v.add(f"{key}.{token}", f"must be a number within [-{LOGIT_BIAS}, {LOGIT_BIAS}]")


# Accepted for compatibility and not forwarded (they tune sampling or bookkeeping only),
# but checked as OpenAI checks them; each may be null, as if absent.
_IGNORED_CHECKS: Mapping[str, Callable[[Mapping[str, Any], str, Violations], object]] = {
    "user": _string,
    "seed": _seed,
    "metadata": _metadata,
    "store": _flag,
    "service_tier": _one_of(SERVICE_TIERS),
    "parallel_tool_calls": _flag,
    "presence_penalty": _penalty,
    "frequency_penalty": _penalty,
    "logit_bias": _logit_bias,
    # OpenAI's prompt caching and abuse monitoring: nothing for Quorum to do with them.
    "safety_identifier": _safety_identifier,
    "prompt_cache_key": _string,
    "prompt_cache_retention": _one_of(CACHE_RETENTIONS),
    "prompt_cache_options": _object,
}
IGNORED = frozenset(_IGNORED_CHECKS)


def _params(body: Mapping[str, Any], v: Violations) -> d.GenerationParams:
    logprobs = _flag(body, "logprobs", v)
    top_logprobs = body.get("top_logprobs")
    if top_logprobs is not None and not _is_integer(top_logprobs):
        v.add("top_logprobs", "must be an integer")
    elif top_logprobs not in (None, 0):
        v.add("top_logprobs", "not supported; the quorum field reports a mean log-probability")
    tools, choice = _tool_choice(body.get("tool_choice"), _tools(body.get("tools"), v), v)
    return d.GenerationParams(
        max_tokens=_max_tokens(body, v),
        temperature=_number(body, "temperature", 0.0, 2.0, v),
        top_p=_number(body, "top_p", 0.0, 1.0, v),
        stop=_stop(body.get("stop"), v),
        response_format=_response_format(body.get("response_format"), v),
        tools=tools,
        logprobs=logprobs,
        tool_choice=choice,
    )


def _stream_options(options: Any, stream: bool, v: Violations) -> bool:
    """Check ``stream_options`` as OpenAI does (an object of its known keys, each a
    boolean, only with ``stream: true``); returns include_usage."""
    if options is None:
        return False
    if not stream:
        v.add("stream_options", "only allowed when stream is true")
        return False
    if not isinstance(options, dict):
        v.add("stream_options", "must be an object")
        return False
    for key in sorted(options.keys() - set(STREAM_OPTIONS)):
        v.add(f"stream_options.{key}", f"unrecognized; known: {', '.join(STREAM_OPTIONS)}")
    flags = {key: _flag(options, key, v, f"stream_options.{key}") for key in STREAM_OPTIONS}
    return flags["include_usage"]


def _top_level(body: Mapping[str, Any], v: Violations) -> tuple[bool, bool]:
    """Check the keys that shape the exchange, and those accepted and ignored; returns
    (stream, include_usage)."""
    unknown = body.keys() - HANDLED - IGNORED
    # In sorted order, as many as are kept (a body may have a million); the rest counted.
    listed = heapq.nsmallest(v.room, unknown)
    for key in listed:
        v.add(key, UNSUPPORTED.get(key, "unrecognized request argument"))
    v.count(len(unknown) - len(listed))
    for key, check in _IGNORED_CHECKS.items():
        if body.get(key) is not None:
            check(body, key, v)
    n = body.get("n")
    if n is not None and not _is_integer(n):
        v.add("n", "must be an integer")
    elif n not in (None, 1):
        v.add("n", "must be 1: Quorum returns one choice")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        v.add("modalities", 'only ["text"] is supported')
    stream = _flag(body, "stream", v)
    return stream, _stream_options(body.get("stream_options"), stream, v)


def parse_chat_request(
    body: Any,
    *,
    catalog: Catalog,
    policy: RoutingPolicy,
    max_messages: int,
    request_id: str,
    agents: Collection[str] = (),
    tenant: str = "",
) -> ChatRequest:
    """Validate a chat-completions body; raise :class:`InvalidRequest` naming every bad
    field, or :class:`NotFound` (param ``model``) for an unknown model."""
    v = Violations()
    if not isinstance(body, dict):
        raise InvalidRequest([FieldViolation("body", "must be a JSON object")])
    # First, so that no later check (or its error message) handles text UTF-8 cannot carry.
    surrogates = _surrogates(body)
    if surrogates:
        raise InvalidRequest(surrogates)
    stream, include_usage = _top_level(body, v)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        v.add("model", "is required: a model name or quorum:auto")
        model = ""
    raw_messages = body.get("messages")
    messages: list[d.Message] = []
    if not isinstance(raw_messages, list) or not raw_messages:
        v.add("messages", "at least one message is required")
    elif len(raw_messages) > max_messages:
        v.add("messages", f"has {len(raw_messages)} messages, limit {max_messages}")
    else:
        for i, raw in enumerate(raw_messages):
            message = _message(raw, f"messages[{i}]", v)
            if message is not None:
                messages.append(message)
    params = _params(body, v)
    if not v.total and any(m.tool_calls or m.role is d.Role.TOOL for m in messages):
        for field, problem in tool_turn_problems(messages, params):
            v.add(field, problem)
    extension = body.get("quorum", {})
    if not isinstance(extension, dict):
        v.add("quorum", "must be an object of routing hints")
        extension = {}
    target: naming.Target | None = None
    missing: NotFound | None = None
    if model:
        try:
            target = naming.resolve(model, extension, catalog, policy, agents)
        except InvalidRequest as exc:
            v.extend(exc)
        except NotFound as exc:
            missing = exc
    if v.total:
        raise v.error()
    if missing is not None:
        raise missing
    assert target is not None
    route = d.RouteRequest(
        request_id=request_id,
        messages=tuple(messages),
        params=d.settle_tool_choice(params, tuple(messages)),
        hints=target.hints,
        tenant=tenant,
    )
    return ChatRequest(route, model, stream, include_usage, target.origins)


# ---- domain → JSON ----------------------------------------------------------------------


def finish_reason(completion: d.Completion) -> str:
    reason = completion.finish_reason
    if reason in _FINISH_REASONS:
        return reason
    return "tool_calls" if completion.tool_calls else "stop"


def tool_call_json(call: d.ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments_json or "{}"},
    }


def usage_json(usage: d.Usage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }
    if usage.cached_input_tokens:
        body["prompt_tokens_details"] = {"cached_tokens": usage.cached_input_tokens}
    return body


def completion_id(request_id: str) -> str:
    return f"chatcmpl-{request_id}"


def completion_body(result: d.RouteResult, created: int) -> dict[str, Any]:
    """The ``chat.completion`` object, with Quorum's account in ``quorum``."""
    completion = result.completion
    message: dict[str, Any] = {
        "role": "assistant",
        "content": completion.content if completion.content or not completion.tool_calls else None,
        "refusal": None,
    }
    if completion.tool_calls:
        message["tool_calls"] = [tool_call_json(c) for c in completion.tool_calls]
    return {
        "id": completion_id(result.request_id),
        "object": "chat.completion",
        "created": created,
        "model": result.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(completion),
            }
        ],
        "usage": usage_json(completion.usage),
        "system_fingerprint": None,
        "quorum": account_json(result),
    }
