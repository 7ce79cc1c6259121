"""Shapes of identifiers and sizes accepted from callers, shared by every front door."""

from __future__ import annotations

import re

REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MAX_CONTENT_CHARS = 2_000_000
MAX_IMAGE_BYTES = 20 * 1024 * 1024
