"""Shapes of identifiers and sizes accepted from callers, shared by every front door."""

from __future__ import annotations

import binascii
import os
import re

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


def json_object_problem(text: str, what: str) -> str:
    """What keeps ``text`` from being ``what``, a JSON object, else "". The JSON is strict,
    parsed as the providers parse it (orjson): no NaN or Infinity (Python's ``json`` takes
    them), no number beyond a double's range, no lone surrogate, nesting under 1024."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        at = f"(at character {exc.pos})"
        if exc.msg.startswith("number is infinity"):
            return f"has a number out of range {at}: a double holds at most about 1.8e308"
        if text.startswith(("NaN", "Infinity"), exc.pos):
            return f"must be strict JSON: NaN, Infinity and -Infinity are not JSON {at}"
        return f"must be {what}: {exc.msg} {at}"
    return "" if isinstance(value, dict) else f"must be {what}"


def base64_size(payload: str) -> int:
    """The size in bytes of a data URL's strict base64 ``payload``; ``ValueError`` saying
    what is wrong when it is not strict base64."""
    try:
        return len(binascii.a2b_base64(payload, strict_mode=True))
    except binascii.Error as exc:
        raise ValueError(f"has a payload that is not base64 ({exc})") from None
