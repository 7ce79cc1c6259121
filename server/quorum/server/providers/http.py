"""HTTP plumbing shared by the HTTP adapters: one session, status → error mapping.

One :class:`aiohttp.ClientSession` serves every provider (connection pooling, one DNS
cache). A unary call gets a total timeout (:func:`timeout_for`); a stream gets an idle
timeout, and a total one only from the caller's remaining deadline
(:func:`stream_timeout_for`). HTTP error statuses become :mod:`quorum.server.errors`
provider errors here, in one place, so every adapter classifies them the same way:

    3xx                       ProviderRedirected (never followed; see below)
    429                       ProviderRateLimited (with Retry-After)
    401, 403                  ProviderAuthError
    408                       ProviderRequestTimeout (retried; no breaker verdict)
    any other 4xx (409 too)   ProviderRejected (the request's fault; not counted)
    5xx (and anything else)   ProviderUnavailable (counted by the breaker)

No provider call follows a redirect (``allow_redirects=False``, see :mod:`.sse`):
following one would send the request's credential headers (``Authorization``,
``x-api-key``, ``x-goog-api-key``, a provider's own ``headers``) to whatever host the
``Location`` names, and a 301/302/303 would turn the POST into a body-less GET whose
answer looked like a success. A 3xx means the provider's ``base_url`` is not the API's
own address, an operator's mistake that no retry mends and no fault of the caller's:
:class:`ProviderRedirected` (UNAVAILABLE, like wrong credentials), failed over, not
retried on that deployment nor counted by its breaker, its message naming the status and
the ``Location``'s host, never the URL's path or query.

Vendor error text is redacted here too (:func:`redact`): a vendor may repeat the key it
was sent ("Incorrect API key provided: sk-…", in full from some OpenAI-compatible servers
and proxies), and that text goes into error statuses, failure details and logs. Each
adapter passes its :func:`credentials` to :func:`error_for_status` and every other place
it quotes a vendor's error.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlsplit

import aiohttp

from quorum.server.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRedirected,
    ProviderRejected,
    ProviderRequestTimeout,
    ProviderUnavailable,
)

# The most of an answer's body read (decompressed), and of one server-sent event: its
# text and tool calls are held to base.MAX_ANSWER_BYTES (the RouteResponse must fit a
# default gRPC client's 4 MiB), but the body around them is larger: the JSON envelope,
# escapes (a "\uXXXX" is 6 bytes) and per-token log-probabilities (about 85 bytes a
# token: 11 MB for the 128k tokens the longest answers have today). A body past this
# limit is not read on: a bad response, never tens of megabytes held in memory.
MAX_BODY_BYTES = 16 * 1024 * 1024


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    return max(0.0, seconds) if seconds == seconds else None  # NaN guard


REDACTED = "[redacted]"
# Request headers whose values are credentials: Authorization, x-api-key, x-goog-api-key,
# api-key (Azure), and whatever a gateway calls its token, secret, cookie or signature.
_CREDENTIAL_HEADER = re.compile(r"auth|key|token|secret|passw|cookie|session|signature|cred", re.I)
_MIN_SECRET = 4  # shorter values are placeholders, not secrets: redacting them garbles text
_MIN_KEY = 16  # keys at least this long are also redacted in part (see redact)
_MIN_PIECE = 8  # ...as a piece of at least this many characters
_KEY_CHARS = r"[A-Za-z0-9_\-]"
# A run of key characters, possibly with a mask ("****", "…", "...") inside or around it:
# possessive and starting at runs' ends only, so linear in the text.
_KEY_FORM = re.compile(rf"({_KEY_CHARS}*+)((?:[*•·…]|\.\.+)++)({_KEY_CHARS}*+)|({_KEY_CHARS}++)")


def credentials(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The secret values among a provider's request ``headers``: each credential
    header's value and, for ``Authorization: Bearer <key>`` and the like, the key alone;
    the longest first (what :func:`redact` wants)."""
    found: set[str] = set()
    for name, value in headers.items():
        if not _CREDENTIAL_HEADER.search(name):
            continue
        value = value.strip()
        found.add(value)
        scheme, _, rest = value.partition(" ")
        if rest.strip() and scheme.isalpha():  # "Bearer <key>", "Basic <base64>"
            found.add(rest.strip())
    return tuple(sorted((v for v in found if len(v) >= _MIN_SECRET), key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` (:func:`credentials`) replaced by ``[redacted]``;
    so is a word (a run of letters, digits, ``-`` and ``_``) showing a key of at least
    16 characters in part: masked ("sk-ab****wxyz", "sk-ab…wxyz", "****wxyz": a start or
    an end of 4 characters or more around a mask), holding 8 characters of it in a row,
    made of its start and end run together, or, ending the text, made of its first 4 or
    more (a key cut off by a length limit)."""
    keys: list[str] = []
    for secret in secrets:
        if len(secret) >= _MIN_SECRET and secret in text:
            text = text.replace(secret, REDACTED)
        if len(secret) >= _MIN_KEY and re.fullmatch(rf"{_KEY_CHARS}+", secret):
            keys.append(secret)
    pieces = {key[i : i + _MIN_PIECE] for key in keys for i in range(len(key) - _MIN_PIECE + 1)}
    # Each form shows the key's first or last 4 characters or one of its pieces: a text
    # with none of them (the usual case) needs no closer look.
    if not any(key[:4] in text or key[-4:] in text for key in keys) and not any(
        piece in text for piece in pieces
    ):
        return text

    def shown(match: re.Match[str]) -> str:
        start, _, end, run = match.groups()
        if run is None:
            if max(len(start), len(end)) >= 4 and any(
                key.startswith(start) and key.endswith(end) for key in keys
            ):
                return REDACTED
            return str(match[0])
        if any(run[i : i + _MIN_PIECE] in pieces for i in range(len(run) - _MIN_PIECE + 1)):
            return REDACTED
        for key in keys:
            if _MIN_PIECE <= len(run) <= len(key) and _start_then_end(run, key):
                return REDACTED
            if len(run) >= 4 and match.end() == len(text) and key.startswith(run):
                return REDACTED
        return str(match[0])

    return _KEY_FORM.sub(shown, text)


def _start_then_end(run: str, key: str) -> bool:
    """Whether ``run`` (no longer than ``key``) is a start of ``key`` then an end of it."""
    start = 0
    while start < len(run) and run[start] == key[start]:
        start += 1
    end = 0
    while end < len(run) and run[-1 - end] == key[-1 - end]:
        end += 1
    return start + end >= len(run)


def error_for_status(
    provider: str,
    status: int,
    message: str,
    headers: Mapping[str, str],
    *,
    secrets: Sequence[str] = (),
) -> ProviderError:
    """Map an HTTP error status and the vendor's message to a provider error, with the
    provider's ``secrets`` (:func:`credentials`) redacted from the message."""
    if 300 <= status < 400:
        # The body of a redirect is no vendor message (an HTML page quoting the new URL,
        # query and all): the status and the host it points to say what is wrong.
        where = redirect_host(headers.get("Location"))
        text = (
            f"{provider}: HTTP {status} redirect to {where}, not followed: "
            "the provider's base_url must be the API's own address"
        )
        return ProviderRedirected(redact(text, secrets), provider=provider, status=status)
    message = redact(message, secrets)
    text = f"{provider}: HTTP {status}: {message}" if message else f"{provider}: HTTP {status}"
    if status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if retry_after is None:
            ms = headers.get("retry-after-ms")
            if ms:
                try:
                    retry_after = max(0.0, float(ms) / 1000.0)
                except ValueError:
                    retry_after = None
        return ProviderRateLimited(text, provider=provider, retry_after_s=retry_after)
    if status in (401, 403):
        return ProviderAuthError(text, provider=provider, status=status)
    if status == 408:
        # The server gave up waiting for the request (a slow upload, an idle pooled
        # connection): worth trying again, but no verdict on the provider's health.
        return ProviderRequestTimeout(text, provider=provider, status=status)
    if 400 <= status < 500:  # 409 as well: a conflict is about this request
        return ProviderRejected(text, provider=provider, status=status)
    return ProviderUnavailable(text, provider=provider, status=status)


def redirect_host(location: str | None) -> str:
    """Where a redirect's ``Location`` points, for an error message: its host (and port),
    never its user info, path or query, which may carry secrets."""
    if not location:
        return "no Location"
    try:
        parts = urlsplit(location.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return "an unreadable Location"
    if not host:
        return "another path on the same host"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port is not None else host


def timeout_for(remaining_s: float, connect_s: float) -> aiohttp.ClientTimeout:
    """A unary call's timeout: the whole answer within ``remaining_s``."""
    total = max(0.001, remaining_s)
    return aiohttp.ClientTimeout(total=total, sock_connect=min(connect_s, total))


def stream_timeout_for(
    silence_s: float, total_s: float | None, connect_s: float
) -> aiohttp.ClientTimeout:
    """A stream's timeout: the connection within ``silence_s``, then never longer than
    ``silence_s`` without a byte from the provider (aiohttp's ``sock_read``, restarted
    by every read: the wait for the response, its first chunk and each next one); the
    whole stream within ``total_s`` (the caller's deadline), when given. A stream that
    keeps answering may outlast ``silence_s`` many times over."""
    silence = max(0.001, silence_s)
    total = None if total_s is None else max(0.001, total_s)
    return aiohttp.ClientTimeout(
        total=total, connect=silence, sock_connect=min(connect_s, silence), sock_read=silence
    )


class HttpClient:
    """Owns the one shared aiohttp session; created inside the running event loop."""

    def __init__(self, *, max_connections: int = 512) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ttl_dns_cache=300, enable_cleanup_closed=True
            )
            # Provider APIs authenticate with keys, never cookies: a dummy jar skips
            # cookie filtering and storing on every request (about 10 µs of CPU each).
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
