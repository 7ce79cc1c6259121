"""Argument types shared by the command-line tools: numbers checked as argparse reads
them, so a bad value is a usage error naming the option, never a traceback later."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable


def whole_at_least(low: int, why: str = "") -> Callable[[str], int]:
    """A whole number of at least ``low``; ``why`` explains the bound in the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}{why}, not {value}")
        return value

    return parse


def whole_within(low: int, high: int, why: str = "") -> Callable[[str], int]:
    """A whole number from ``low`` to ``high``; ``why`` explains the upper bound in the
    error."""
    at_least = whole_at_least(low)

    def parse(text: str) -> int:
        value = at_least(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}{why}, not {value}")
        return value

    return parse


def utf8_text(text: str) -> str:
    """An argument's text, refused unless it is UTF-8: the shell hands over bytes, and
    Python keeps each byte that is not UTF-8 as a lone surrogate (U+DC80-U+DCFF), which
    no request can carry (protobuf strings are UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise argparse.ArgumentTypeError(
            f"not UTF-8 text ({what} at character {exc.start + 1})"
        ) from None
    return text


def file_name(text: str) -> str:
    """A file's name, refused when empty (an unset shell variable, as in ``--config $CFG``):
    it would otherwise read as no file given, or as the current directory."""
    if not text:
        raise argparse.ArgumentTypeError("an empty file name (is a shell variable unset?)")
    return text


def finite_number(accept: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    """A finite number that ``accept`` takes; the error says it must be ``expected``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"must be {expected}, not {text}")
        return value

    return parse


_HOST_PORT = re.compile(r"(\[[^\[\]]+\]|[A-Za-z0-9_.-]+):([0-9]+)")
# gRPC target schemes that name no HOST:PORT of their own (a socket path, an address list,
# a control plane): gRPC reads the rest.
_OTHER_SCHEMES = ("unix:", "unix-abstract:", "ipv4:", "ipv6:", "vsock:", "xds:")


def host_port_problem(text: str, *, example: str) -> str | None:
    """Why ``text`` is not a ``HOST:PORT`` to connect to (``[v6]:PORT`` too), or None."""
    match = _HOST_PORT.fullmatch(text)
    if match is None:
        return f"{text!r}: expected HOST:PORT, e.g. {example}"
    port = int(match[2])
    if not 1 <= port <= 65535:
        return f"{text!r}: port {port} is not within 1-65535"
    return None


def target_problem(text: str, *, example: str) -> str | None:
    """Why ``text`` is not a gRPC target to call, or None: ``HOST:PORT``, or
    ``dns:[//AUTHORITY/]HOST:PORT``, or another scheme gRPC resolves (``unix:PATH``, ...)."""
    if text.startswith("dns:"):
        rest = text.removeprefix("dns:")
        if rest.startswith("//"):  # an authority (the DNS server), often empty
            rest = rest[2:].partition("/")[2]
        problem = host_port_problem(rest, example=example)
        return None if problem is None else f"{text!r}: expected dns:[//DNS-SERVER/]HOST:PORT"
    for scheme in _OTHER_SCHEMES:
        if text.startswith(scheme):
            return None if text.removeprefix(scheme) else f"{text!r}: nothing after {scheme}"
    return host_port_problem(text, example=example)
