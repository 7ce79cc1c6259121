"""HTTP plumbing shared by the HTTP adapters: one session, status → error mapping.

One :class:`aiohttp.ClientSession` serves every provider (connection pooling, one DNS
cache). A unary call gets a total timeout (:func:`timeout_for`); a stream gets an idle
timeout, and a total one only from the caller's remaining deadline
(:func:`stream_timeout_for`). HTTP error statuses become :mod:`quorum.server.errors`
provider errors here, in one place, so every adapter classifies them the same way:

    429                       ProviderRateLimited (with Retry-After)
    401, 403                  ProviderAuthError
    408                       ProviderRequestTimeout (retried; no breaker verdict)
    any other 4xx (409 too)   ProviderRejected (the request's fault; not counted)
    5xx (and anything else)   ProviderUnavailable (counted by the breaker)
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import aiohttp

from quorum.server.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderRequestTimeout,
    ProviderUnavailable,
)


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


def error_for_status(
    provider: str, status: int, message: str, headers: Mapping[str, str]
) -> ProviderError:
    """Map an HTTP error status and the vendor's message to a provider error."""
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
