"""A request body as JSON: its ``Content-Encoding`` undone, its size bounded.

The listener runs with aiohttp's own decompression off (``auto_decompress=False``, see
:class:`~quorum.server.frontdoor.app.HttpFrontDoor`), and bodies are decoded here. With
aiohttp decoding, a body that is not the gzip or deflate data its header says failed
inside aiohttp's payload stream: the handler saw an unexpected exception (a 500 with a
traceback), and aiohttp logged it a second time while draining the body; an encoding it
has no decoder for (``br``, ``zstd``) was refused before any handler ran, in plain text.
Here each is a 400 in OpenAI's error shape naming what is wrong (``body`` for the data,
``content-encoding`` for the header), and the decoded size is bounded by
``server.max_request_bytes`` however well the body compresses.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

from aiohttp import hdrs, web

from quorum.server.errors import FieldViolation, InvalidRequest, echo

ENCODING_HEADER = "content-encoding"
#: Request content codings understood, as the error for any other lists them.
ENCODINGS = ("gzip", "deflate", "identity")
_GZIP = frozenset({"gzip", "x-gzip"})  # x-gzip: RFC 9110 asks recipients to treat it as gzip


def _too_large(description: str) -> InvalidRequest:
    # Named "messages", as the gRPC door names it: they are what makes a request large.
    return InvalidRequest([FieldViolation("messages", description)])


def _not_encoded(encoding: str) -> InvalidRequest:
    return InvalidRequest(
        [FieldViolation("body", f"is not valid {encoding} data (content-encoding: {encoding})")]
    )


def _is_zlib(data: bytes) -> bool:
    """Whether ``data`` opens with a zlib header (RFC 1950): method 8, checksum ok."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and int.from_bytes(data[:2], "big") % 31 == 0


def _inflate(data: bytes, wbits: int, budget: int, encoding: str) -> tuple[bytes, bytes]:
    """One compressed stream of ``data``, at most ``budget`` bytes of it; returns the
    output (``budget + 1`` bytes when there was more) and the input after the stream."""
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(data, budget + 1)
    except zlib.error:
        raise _not_encoded(encoding) from None
    if len(out) <= budget and not decoder.eof:
        raise InvalidRequest([FieldViolation("body", f"is truncated {encoding} data")])
    return out, decoder.unused_data


def decode(raw: bytes, encoding: str, max_bytes: int) -> bytes:
    """``raw`` with its content coding (``encoding``, lower case) undone.

    Never produces more than ``max_bytes + 1`` bytes, so a small body that decompresses
    to gigabytes costs no more memory than the size limit. ``deflate`` is the zlib format
    (RFC 9110), but some clients send bare deflate data: a zlib header tells which, as
    aiohttp decides. A gzip body may be several members one after another (RFC 1952).
    """
    if encoding in ("", "identity"):
        return raw
    if encoding not in _GZIP and encoding != "deflate":
        raise InvalidRequest(
            [
                FieldViolation(
                    ENCODING_HEADER,
                    f"{echo(encoding)} is not supported; use one of {', '.join(ENCODINGS)}",
                )
            ]
        )
    if encoding == "deflate":
        wbits = zlib.MAX_WBITS if _is_zlib(raw) else -zlib.MAX_WBITS
        out, rest = _inflate(raw, wbits, max_bytes, encoding)
        if rest:
            raise _not_encoded(encoding)
    else:
        out, rest = b"", raw
        while rest and len(out) <= max_bytes:
            member, rest = _inflate(rest, 16 + zlib.MAX_WBITS, max_bytes - len(out), "gzip")
            out += member
    if len(out) > max_bytes:
        raise _too_large(f"request body is over {max_bytes} bytes once decompressed")
    return out


def _not_json(name: str) -> Any:
    """Python's json reads NaN, Infinity and -Infinity; JSON (and OpenAI) has no such
    values, and the providers' encoders refuse them after the request was taken."""
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    """A JSON number as a float, refused when it is beyond a double's range (1e999)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:32]} is beyond a double's range")
    return value


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """The request's body, decoded and parsed; :class:`InvalidRequest` when it is too
    large, not the encoding its header names, or not JSON."""
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(f"request body is too large, limit {max_bytes} bytes") from None
    if len(raw) > max_bytes:
        raise _too_large(f"request is {len(raw)} bytes, limit {max_bytes}")
    data = decode(raw, encoding, max_bytes)
    try:
        return json.loads(data, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest([FieldViolation("body", f"is not valid JSON ({exc})")]) from None
