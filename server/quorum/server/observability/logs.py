"""Structured JSON logs (structlog), one line per event, request id bound per RPC.

Prompt text is never logged unless ``server.log_prompts`` is set; secrets never are —
provider keys live in ``SecretStr`` and are only read by adapters when building headers.

Libraries that log through the standard library's :mod:`logging` (OpenTelemetry's exporter:
"Transient error StatusCode.UNAVAILABLE encountered while exporting traces ...") are routed
into the same JSON lines (:data:`LIBRARY_LOGGERS`): without a handler, Python would print
their warnings as plain text on stderr.
"""

from __future__ import annotations

import json as stdlib_json
import logging
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

import orjson
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


_request_id: ContextVar[str] = ContextVar("quorum_log_request_id", default="")

LIBRARY_LOGGERS = ("opentelemetry",)
"""Standard-library loggers (and their children) whose records become JSON log lines."""


class _LibraryLog(logging.Handler):
    """A standard-library log record as a structured line: event ``library_log`` at the
    record's level, with the logger's name and the message (and the traceback, if any)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string of the library's: never raise from logging
            message = str(record.msg)
        level = record.levelname.lower()
        if level not in _LEVELS:
            level = "error" if record.levelno >= logging.ERROR else "warning"
        log = structlog.get_logger(record.name)
        getattr(log, level)(
            "library_log", logger=record.name, message=message, exc_info=record.exc_info
        )


_LIBRARY_HANDLER = _LibraryLog()


def _route_library_logs(level: int) -> None:
    """Send :data:`LIBRARY_LOGGERS` through structlog, at ``level`` and above, and not on
    to the root logger (Python's last-resort handler prints plain text). Idempotent."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if _LIBRARY_HANDLER not in logger.handlers:
            logger.addHandler(_LIBRARY_HANDLER)
        logger.setLevel(level)
        logger.propagate = False


class request_scope:  # noqa: N801 - used like a function: ``with request_scope(rid):``
    """Tag every log line of the block with ``request_id``.

    One context variable set and reset: a fraction of what structlog's generic
    ``bound_contextvars`` costs, and this runs on every RPC.
    """

    __slots__ = ("_request_id", "_token")

    def __init__(self, request_id: str) -> None:
        self._request_id = request_id

    def __enter__(self) -> None:
        self._token: Token[str] = _request_id.set(self._request_id)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # An abandoned stream is closed from another context, where reset cannot work.
        # (try/except, not contextlib.suppress: that is three Python calls on every RPC.)
        try:  # noqa: SIM105
            _request_id.reset(self._token)
        except ValueError:
            pass


def _add_request_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    request_id = _request_id.get()
    if request_id:
        event.setdefault("request_id", request_id)
    return event


def _json_bytes(event: Any, **_: Any) -> bytes:
    """orjson's JSON; the standard library's for an event orjson refuses (a string with a
    lone UTF-16 surrogate, which UTF-8 cannot carry), so that logging never raises."""
    try:
        return orjson.dumps(event)
    except TypeError:
        return stdlib_json.dumps(event, default=str).encode()


def _json_text(event: Any, **_: Any) -> str:
    return _json_bytes(event).decode()


def configure_logging(level: str = "info", *, json: bool = True) -> None:
    """Configure structlog; events below ``level`` are dropped before any formatting.

    JSON lines are rendered by orjson straight to standard error's bytes."""
    numeric = _LEVELS.get(level, logging.INFO)
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    factory: Any
    binary = getattr(sys.stderr, "buffer", None)
    if json and binary is not None:
        processors.append(structlog.processors.JSONRenderer(serializer=_json_bytes))
        factory = structlog.BytesLoggerFactory(file=binary)
    elif json:  # a standard error without bytes (a test's capture): the same JSON as text
        processors.append(structlog.processors.JSONRenderer(serializer=_json_text))
        factory = structlog.PrintLoggerFactory(file=sys.stderr)
    else:
        processors.append(structlog.dev.ConsoleRenderer())
        factory = structlog.PrintLoggerFactory(file=sys.stderr)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    _route_library_logs(numeric)
