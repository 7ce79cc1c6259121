"""What the three HTTP adapters share: one POST, one SSE reader, one error translation.

* :func:`post_json` sends a JSON body and returns the decoded JSON answer.
* :func:`open_events` sends a JSON body and yields the answer's server-sent events,
  skipping events whose data is blank (see :class:`SseParser`).
* Neither follows a redirect: a 3xx is an error like a 4xx (see :mod:`.http`), so the
  provider's credentials never go to another host.
* Every aiohttp, socket and JSON failure is translated here, in one place
  (:func:`translate_errors`), into a :mod:`quorum.server.errors` provider error:

      TimeoutError (total, connect, or read: a
      stream silent for longer than its limit)        -> ProviderTimeout
      connection refused/reset, server disconnected,
      payload ended early (ClientPayloadError)        -> ProviderUnavailable
      HTTP status >= 300                              -> http.error_for_status(...)
      body that is not JSON                           -> ProviderBadResponse

The vendor's message in an error body is redacted of the provider's credentials (the
``headers`` the request was sent with, see :func:`http.credentials`): a vendor may repeat
the key it was sent.

An SSE stream whose consumer stops early (the generator is closed, or the task is
cancelled) has its HTTP response *closed*, not returned to the pool, so the upstream
sees the connection go away and stops generating.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiohttp
import orjson

from quorum.server.errors import (
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderQuotaExhausted,
    ProviderRedirected,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from quorum.server.providers.http import (
    MAX_BODY_BYTES,
    HttpClient,
    credentials,
    error_for_status,
    redact,
)
from quorum.server.values import value_type

_MAX_ERROR_TEXT = 500

ErrorRefiner = Callable[[ProviderError, bytes], ProviderError]
"""A vendor hook that improves a mapped error from its raw body (e.g. a retry delay)."""


@value_type
class SseEvent:
    """One dispatched server-sent event: its ``event`` name (may be empty) and data."""

    event: str
    data: str


class SseParser:
    """Incremental SSE parser (WHATWG event-stream rules) over raw byte chunks.

    Lines end in LF, CRLF or CR; ``data:`` lines of one event are joined with LF; a
    blank line dispatches the event, if it had a ``data:`` line (an ``event:`` line alone
    dispatches nothing); comment lines (``:``) are ignored. Lines are not length-limited,
    so one large JSON chunk never trips a reader limit.

    As the standard has it, an event whose ``data:`` lines are empty (``data:`` alone)
    *is* dispatched, with empty data; :func:`open_events` skips it, as it skips any
    event whose data is blank: every vendor's events carry a JSON document, and one
    without (a keep-alive such as ``event: ping`` with ``data:``) means nothing.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []
        self._data_size = 0  # characters in _data

    @property
    def pending(self) -> int:
        """How much of an event not yet complete is held (bytes and characters)."""
        return len(self._buffer) + self._data_size

    def feed(self, chunk: bytes) -> Iterator[SseEvent]:
        """Consume ``chunk`` and yield every event it completes."""
        self._buffer += chunk
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                return
            end, after = cut
            line = self._buffer[:end].decode("utf-8", errors="replace")
            self._buffer = self._buffer[after:]
            event = self._line(line)
            if event is not None:
                yield event

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            if not self._data:  # an empty data buffer: nothing is dispatched
                self._event = ""
                return None
            event = SseEvent(self._event, "\n".join(self._data))
            self._event, self._data, self._data_size = "", [], 0
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
            self._data_size += len(value)
        elif field == "event":
            self._event = value
        return None

    def close(self) -> SseEvent | None:
        """End of input: a final event not followed by a blank line is still dispatched."""
        if self._buffer:
            event = self._line(self._buffer.decode("utf-8", errors="replace"))
            self._buffer = b""
            if event is not None:
                return event
        return self._line("")


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    """Where the first line of ``buffer`` ends and the next starts, if it is complete."""
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r")
    if cr == -1 and lf == -1:
        return None
    if cr == -1 or (lf != -1 and lf < cr):
        return lf, lf + 1
    if cr + 1 == len(buffer):
        return None  # a CR at the end may be the first half of CRLF: wait for more
    return (cr, cr + 2) if buffer[cr + 1 : cr + 2] == b"\n" else (cr, cr + 1)


@contextmanager
def translate_errors(provider: str) -> Iterator[None]:
    """Translate transport and decoding failures into provider errors."""
    try:
        yield
    except ProviderError:
        raise
    except aiohttp.SocketTimeoutError as exc:  # sock_read: a stream's silence
        raise ProviderTimeout(
            f"{provider}: nothing received within its time limit", provider=provider
        ) from exc
    except TimeoutError as exc:  # aiohttp's total/connect/read timeouts all subclass it
        raise ProviderTimeout(f"{provider}: no answer in time", provider=provider) from exc
    except aiohttp.ClientPayloadError as exc:
        raise ProviderUnavailable(
            f"{provider}: response body cut off: {exc}", provider=provider
        ) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise ProviderUnavailable(
            f"{provider}: connection failed: {type(exc).__name__}: {exc}", provider=provider
        ) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:  # orjson's too: a subclass
        raise ProviderBadResponse(f"{provider}: invalid JSON: {exc}", provider=provider) from exc


def error_message(raw: bytes, secrets: Sequence[str] = ()) -> str:
    """The human message of a vendor error body, with ``secrets`` (the provider's
    credentials) redacted, before it is cut to length.

    OpenAI, Anthropic and Gemini all nest it as ``{"error": {"message": ...}}``; the
    vendor's error type or status is appended when present. Anything else is shown
    as (truncated) text.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return redact(raw[:_MAX_ERROR_TEXT].decode("utf-8", errors="replace").strip(), secrets)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return redact(error, secrets)[:_MAX_ERROR_TEXT]
    if isinstance(error, dict):
        message = redact(str(error.get("message") or ""), secrets)[:_MAX_ERROR_TEXT]
        kind = error.get("type") or error.get("status") or error.get("code")
        text = f"{message} ({kind})" if kind and message else message or str(kind or "")
        return redact(text, secrets)
    return redact(raw[:_MAX_ERROR_TEXT].decode("utf-8", errors="replace").strip(), secrets)


def request_json(provider: str, text: str, what: str, default: Any) -> Any:
    """Parse JSON the caller supplied (a schema, tool arguments); empty gives ``default``.

    Invalid JSON is the request's fault, so it is a :class:`ProviderRejected`.
    """
    if not text:
        return default
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProviderRejected(
            f"{provider}: {what} is not valid JSON: {exc}", provider=provider
        ) from exc


def decode_json(provider: str, raw: bytes | str) -> Any:
    """Decode a JSON body; anything else (invalid UTF-8 too) is a
    :class:`ProviderBadResponse`."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # as translate_errors maps them
        raise ProviderBadResponse(f"{provider}: invalid JSON: {exc}", provider=provider) from exc


async def post_json(
    http: HttpClient,
    provider: str,
    url: str,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str],
    time_limit: aiohttp.ClientTimeout,
    refine: ErrorRefiner | None = None,
    max_bytes: int | None = None,
) -> Any:
    """POST ``body`` as JSON and return the decoded JSON answer (errors translated).

    A body over ``max_bytes`` (when given) is not read on: a :class:`ProviderBadResponse`.
    """
    with translate_errors(provider):
        async with http.session.post(
            url,
            data=_encode(body),
            headers=_json_headers(headers),
            timeout=time_limit,
            allow_redirects=False,  # a redirect is an error: see http.error_for_status
        ) as response:
            if max_bytes is None:
                raw = await response.read()
            else:
                raw = await _read_at_most(provider, response, max_bytes)
            if response.status >= 300:
                raise _status_error(provider, response, raw, refine, credentials(headers))
    return decode_json(provider, raw)


@asynccontextmanager
async def open_events(
    http: HttpClient,
    provider: str,
    url: str,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str],
    time_limit: aiohttp.ClientTimeout,
    refine: ErrorRefiner | None = None,
) -> AsyncIterator[AsyncIterator[SseEvent]]:
    """POST ``body`` and yield an iterator over the answer's server-sent events.

    The connection goes back to the pool only when the block exits normally; on any
    exception, including ``GeneratorExit`` from a consumer that stopped early and
    ``CancelledError``, it is closed so the upstream stops work on the request.
    """
    with translate_errors(provider):
        response = await http.session.post(
            url,
            data=_encode(body),
            headers={**_json_headers(headers), "Accept": "text/event-stream"},
            timeout=time_limit,
            allow_redirects=False,  # a redirect is an error: see http.error_for_status
        )
        if response.status >= 300:
            try:
                raw = await response.read()
            finally:
                response.release()
            raise _status_error(provider, response, raw, refine, credentials(headers))
    events = _events(provider, response)
    try:
        yield events
    except BaseException:
        response.close()
        raise
    else:
        response.release()
    finally:
        await events.aclose()


async def _read_at_most(provider: str, response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body of ``response``, if it is at most ``limit`` bytes (decompressed); else a
    bad response, raised as soon as its Content-Length or what was read says so, the
    connection closed rather than read to its end."""
    length = response.content_length
    if length is not None and length > limit:
        response.close()
        raise ProviderBadResponse(
            f"{provider}: answer too large: a {length}-byte body, over the {limit}-byte limit",
            provider=provider,
        )
    pieces: list[bytes] = []
    size = 0
    async for piece in response.content.iter_any():
        size += len(piece)
        if size > limit:
            response.close()
            raise ProviderBadResponse(
                f"{provider}: answer too large: over {limit} bytes of body, read no further",
                provider=provider,
            )
        pieces.append(piece)
    return b"".join(pieces)


async def _events(provider: str, response: aiohttp.ClientResponse) -> AsyncGenerator[SseEvent]:
    parser = SseParser()
    chunks = response.content.iter_any()
    while True:
        with translate_errors(provider):
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
        for event in parser.feed(chunk):
            if _carries_data(event):
                yield event
        if parser.pending > MAX_BODY_BYTES:  # one event that never ends
            raise ProviderBadResponse(
                f"{provider}: answer too large: an event of over {MAX_BODY_BYTES} bytes",
                provider=provider,
            )
    last = parser.close()
    if last is not None and _carries_data(last):
        yield last


def _carries_data(event: SseEvent) -> bool:
    """Whether ``event`` has data to read: an event whose data is empty or blank (a
    keep-alive's ``data:``) carries no JSON document, in any vendor's stream."""
    data = event.data
    return bool(data) and not data.isspace()  # O(1) for data that starts with JSON


def _status_error(
    provider: str,
    response: aiohttp.ClientResponse,
    raw: bytes,
    refine: ErrorRefiner | None,
    secrets: Sequence[str],
) -> ProviderError:
    message = error_message(raw, secrets)
    error = error_for_status(provider, response.status, message, response.headers, secrets=secrets)
    if isinstance(error, ProviderRedirected):  # its body is no vendor's error, whatever it says
        return error
    error = account_error(error, raw)
    return refine(error, raw) if refine is not None else error


def account_error(error: ProviderError, raw: bytes) -> ProviderError:
    """An error about the provider account, told apart from what its status suggests:
    OpenAI's 429 ``insufficient_quota`` and Anthropic's 400 "credit balance is too low"
    are exhausted quota, not a rate limit or a bad request; Gemini's 400 with reason
    ``API_KEY_INVALID`` is a bad key, not a bad request."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return error
    detail = body.get("error") if isinstance(body, dict) else None
    if not isinstance(detail, dict):
        return error
    kinds = {str(detail.get("type") or ""), str(detail.get("code") or "")}
    message = str(detail.get("message") or "").lower()
    details = detail.get("details")
    reasons = {
        str(d.get("reason") or "")
        for d in (details if isinstance(details, list) else ())
        if isinstance(d, dict)
    }
    provider, status = error.provider, error.status
    if "insufficient_quota" in kinds or "credit balance is too low" in message:
        return ProviderQuotaExhausted(error.message, provider=provider, status=status)
    if "API_KEY_INVALID" in reasons:
        return ProviderAuthError(error.message, provider=provider, status=status)
    return error


def _encode(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON (orjson: about a tenth of the stdlib encoder's time)."""
    return orjson.dumps(body)


def _json_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {"Content-Type": "application/json", **headers}
