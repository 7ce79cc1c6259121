"""Shapes of identifiers and sizes accepted from callers, shared by every front door."""

from __future__ import annotations

import binascii
import os
import re
from typing import Any

import orjson

# Anchored with ``\Z``, not ``$``: ``$`` also matches before a trailing newline, so
# ``"abc\n"`` would pass ``.match``. These match the whole string however they are called.
REQUEST_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}\Z")
NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}\Z")
# What NAME accepts, as a violation says it: the first character is a letter or digit.
NAME_RULE = "must be 1-64 letters, digits or _.:/-, starting with a letter or digit"
REQUEST_ID_RULE = "must be 1-128 letters, digits or ._:/-, starting with a letter or digit"
TOOL_NAME = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MAX_CONTENT_CHARS = 2_000_000
MAX_IMAGE_BYTES = 20 * 1024 * 1024


def new_request_id() -> str:
    """A random id for a request that brought none: 32 hex digits (128 random bits,
    without the UUID object a ``uuid4()`` would build first)."""
    return os.urandom(16).hex()


# How deep a tool's JSON (its parameters' schema, a call's arguments) may nest objects and
# arrays. The adapters encode request bodies with orjson, which refuses more than 255
# levels, and the body wraps the tool's JSON in a few levels of its own; some providers'
# parsers stop at 128 (serde_json's default). No real tool nears this: OpenAI's structured
# outputs cap a schema's objects at a few levels deep (5 at launch), each level costing 2
# here (a property's schema inside a "properties" object).
MAX_JSON_DEPTH = 64
_CONTAINERS = (dict, list)  # (isinstance is quicker with a tuple than with dict | list)


def nests_deeper(value: Any, limit: int) -> bool:
    """Whether a parsed JSON ``value`` nests objects and arrays more than ``limit`` deep
    (``{}`` is 1 deep). Level by level, without recursion; only containers are visited,
    in plain loops (a generator per container costs three times as much)."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for container in level:
            for item in container.values() if isinstance(container, dict) else container:
                if isinstance(item, _CONTAINERS):
                    below.append(item)
        level = below
    return False


def json_object_problem(text: str, what: str, max_depth: int = MAX_JSON_DEPTH) -> str:
    """What keeps ``text`` from being ``what``, a JSON object, else "". The JSON is strict,
    parsed as the providers parse it (orjson): no NaN or Infinity (Python's ``json`` takes
    them), no number beyond a double's range, no lone surrogate, and nesting at most
    ``max_depth`` deep (what every provider's encoder and parser takes)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        at = f"(at character {exc.pos})"
        if exc.msg.startswith("number is infinity"):
            return f"has a number out of range {at}: a double holds at most about 1.8e308"
        if exc.msg.startswith("depth limit exceeded"):  # orjson's own: 1024 levels
            return f"nests objects and arrays more than {max_depth} deep"
        if "surrogate" in exc.msg:
            return f"is not valid Unicode text: a string has a lone surrogate {at}"
        if text.startswith(("NaN", "Infinity"), exc.pos):
            return f"must be strict JSON: NaN, Infinity and -Infinity are not JSON {at}"
        return f"must be {what}: {exc.msg} {at}"
    if not isinstance(value, dict):
        return f"must be {what}"
    # Nesting needs an opening bracket a level: text with few cannot nest deep, and most
    # tools' JSON is that small, so the walk is seldom needed.
    if text.count("{") + text.count("[") > max_depth and nests_deeper(value, max_depth):
        return f"nests objects and arrays more than {max_depth} deep"
    return ""


def base64_size(payload: str) -> int:
    """The size in bytes of a data URL's strict base64 ``payload``; ``ValueError`` saying
    what is wrong when it is not strict base64."""
    try:
        return len(binascii.a2b_base64(payload, strict_mode=True))
    except binascii.Error as exc:
        raise ValueError(f"has a payload that is not base64 ({exc})") from None
