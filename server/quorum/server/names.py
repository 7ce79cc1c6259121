"""Shapes of identifiers and sizes accepted from callers, shared by every front door."""

from __future__ import annotations

import os
import re

# Anchored with ``\Z``, not ``$``: ``$`` also matches before a trailing newline, so
# ``"abc\n"`` would pass ``.match``. These match the whole string however they are called.
REQUEST_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}\Z")
NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}\Z")
TOOL_NAME = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MAX_CONTENT_CHARS = 2_000_000
MAX_IMAGE_BYTES = 20 * 1024 * 1024


def new_request_id() -> str:
    """A random id for a request that brought none: 32 hex digits (128 random bits,
    without the UUID object a ``uuid4()`` would build first)."""
    return os.urandom(16).hex()
