"""A raw upstream for what no fake vendor sends: exact bytes, statuses and headers.

Each request gets the next queued :class:`Canned` response, or the default one, and is
recorded (:class:`Seen`: method, path, query and headers), so a test can tell whether a
request reached it at all and what it carried (a redirect target that must never be
called, a malformed answer that must be refused). It speaks no vendor's API: a test
writes the vendor's wire format itself.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Canned:
    """One response, sent as it is."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Canned:
        """A JSON body (``value`` written by the stdlib, so NaN is written as NaN)."""
        body = json.dumps(value).encode()
        return cls(status, body, {"Content-Type": "application/json"})

    @classmethod
    def events(cls, *frames: bytes | Any) -> Canned:
        """A ``text/event-stream`` body: each frame as it is (bytes) or as one
        ``data:`` event of JSON."""
        body = b"".join(
            f if isinstance(f, bytes) else b"data: " + json.dumps(f).encode() + b"\n\n"
            for f in frames
        )
        return cls(200, body, {"Content-Type": "text/event-stream"})

    @classmethod
    def redirect(cls, status: int, location: str) -> Canned:
        return cls(status, b"Moved", {"Location": location, "Content-Type": "text/plain"})


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as it arrived."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    header_lines: tuple[tuple[str, str], ...] = ()  # every header line, repeats included

    def all(self, name: str) -> list[str]:
        """Every value of header ``name`` (compared case-insensitively), in order."""
        return [v for k, v in self.header_lines if k.lower() == name.lower()]


class Scripted:
    """The upstream's state: what it answers and what it has seen."""

    def __init__(self, default: Canned) -> None:
        self.default = default
        self.script: deque[Canned] = deque()
        self.seen: list[Seen] = []
        self.root = ""  # http://127.0.0.1:PORT, once serving

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen.append(
            Seen(
                request.method,
                request.path,
                request.query_string,
                dict(request.headers),
                tuple(request.headers.items()),
            )
        )
        canned = self.script.popleft() if self.script else self.default
        return web.Response(status=canned.status, body=canned.body, headers=canned.headers)


@contextlib.asynccontextmanager
async def serve(default: Canned | None = None) -> AsyncIterator[Scripted]:
    """Run a scripted upstream in the current event loop for the duration of the block."""
    upstream = Scripted(default or Canned.json({}))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    upstream.root = f"http://{host}:{port}"
    try:
        yield upstream
    finally:
        await runner.cleanup()
