"""The engine every fake vendor server shares: behaviours, control API, stats, running.

A vendor module (``openai_server``, ``anthropic_server``, ``gemini_server``) supplies a
:class:`Vendor`: how to read its request into a :class:`Parsed` (rejecting what the real
API rejects) and how to write answers, stream frames and error bodies in its exact wire
format. Everything else lives here, once.

Behaviour is chosen by the model name, or by a script queued through the control API:

=====================  ==============================================================
``ok`` (or unknown)    a fixed answer; JSON when the request asks for JSON
``echo``               answers with the last user message (or the last tool result)
``tools``              calls the first declared tool with ``{"city": "Paris"}``; so does
                       any model whose request requires a tool call (or the named one)
``no-tools``           answers in text whatever the tools and ``tool_choice`` (as some
                       models do)
``no-usage``           answers without reporting usage (as some compatible servers do)
``cached``             reports half the prompt as read from the prompt cache (Anthropic:
                       a quarter more as written to it)
``refusal``            declines: OpenAI ``refusal``, Anthropic stop reason ``refusal``,
                       Gemini finish reason ``SAFETY`` with no content
``malformed-call``     Gemini: finish reason ``MALFORMED_FUNCTION_CALL`` with no content
                       (the others answer as ``ok``)
``quota``, ``bad-key``  the vendor's answer for an account out of quota or credit, or
                       a key that is not valid (OpenAI 429 ``insufficient_quota``,
                       Anthropic 400 credit balance, Gemini 400 ``API_KEY_INVALID``)
``leak-key``           401 whose message repeats the key the request carried: masked, as
                       OpenAI's API does, and whole, as some compatible servers do
``leak-key-mid-stream`` the same message in an in-stream error event (unary: as
                       ``leak-key``)
``bad-tool-args``      calls the first declared tool with arguments that are not JSON
                       (``{not json``; where the wire carries a JSON value, Anthropic's
                       ``input`` and Gemini's ``args``, that text as a JSON string)
``bad-tool-array``     ...with arguments that are JSON but not an object (``[1, 2]``)
``bad-tool-name``      ...with an empty name and an empty id
``cut-tool-args``      ...with arguments cut off mid-way (``{"city": "Par``) and the finish
                       reason of an answer stopped at ``max_tokens``
``huge-<kib>``         answers with ``kib`` KiB of text (in 16 KiB words when streamed)
``huge-chunked-<kib>`` the same, the unary body sent chunked (no Content-Length)
``json``               answers with :data:`JSON_ANSWER`
``json-fenced``        the same inside a Markdown code fence (as some models write it)
``slow-<ms>``          waits ``ms`` before answering
``drip-<ms>``          streams the answer with ``ms`` between chunks
``error-<status>``     the vendor's error body with that HTTP status
``ratelimit-<s>``      429 with ``Retry-After: <s>``
``ratelimit-date-<s>`` 429 with ``Retry-After`` as an HTTP date ``s`` seconds ahead
``drop``               closes the connection before answering
``drop-mid-stream``    streams some chunks, then resets the connection (TCP RST)
``error-mid-stream``   streams some chunks, then the vendor's in-stream error
``malformed``          a 200 whose body (or first SSE event) is not valid JSON
``truncated-stream``   streams some chunks and ends the body without the terminator
=====================  ==============================================================

Control API: ``POST /_control/script`` with ``{"behaviours": [...]}`` queues behaviours
for the next requests whatever their model; ``GET /_control/stats``; ``POST
/_control/reset``. Stats count requests, completed answers, server-side drops and
*client disconnects*: requests whose client went away before the whole answer was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import json
import re
import signal
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from aiohttp import web

OK_TEXT = "Hello from the fake server: the answer is 42."
REFUSAL_TEXT = "I'm sorry, but I can't help with that."
JSON_ANSWER: dict[str, Any] = {"answer": 42, "unit": "none"}
TOOL_ARGUMENTS: dict[str, Any] = {"city": "Paris"}
LOGPROB_STEP = 0.05

_BEHAVIOUR = re.compile(
    r"^(?P<kind>ok|echo|tools|no-tools|bad-tool-args|bad-tool-array|bad-tool-name|cut-tool-args|huge-chunked|huge|no-usage|cached|refusal|malformed-call|quota|bad-key|leak-key-mid-stream|leak-key|json-fenced|json|drop|drop-mid-stream|error-mid-stream|malformed|"
    r"truncated-stream|slow|drip|error|ratelimit|ratelimit-date)(?:-(?P<value>\d+(?:\.\d+)?))?$"
)


_VALUED = ("slow", "drip", "error", "ratelimit", "ratelimit-date", "huge", "huge-chunked")
# Tool arguments of the ``bad-tool-*`` behaviours: the value sent and, where it is no
# JSON text of a value, the text as a vendor that sends arguments as text sends it.
_BAD_ARGUMENTS: dict[str, tuple[Any, str | None]] = {
    "bad-tool-args": ("{not json", "{not json"),
    "bad-tool-array": ([1, 2], None),
    "bad-tool-name": (TOOL_ARGUMENTS, None),
    "cut-tool-args": ('{"city": "Par', '{"city": "Par'),
}
_HUGE_WORD = "x" * (16 * 1024 - 1) + " "


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What the fake does for one request."""

    kind: str
    value: float = 0.0

    @classmethod
    def parse(cls, name: str) -> Behaviour:
        """Read a behaviour from a model name (``models/`` prefix allowed); unknown is ok."""
        match = _BEHAVIOUR.match(name.removeprefix("models/"))
        if match is None:
            return cls("ok")
        value = match["value"]
        kind = match["kind"]
        if kind in _VALUED and value is None:
            return cls("ok")
        return cls(kind, float(value or 0))


@dataclass(slots=True)
class Turn:
    """One turn of the conversation, vendor-neutral."""

    role: str  # "user", "assistant" or "tool"
    text: str = ""
    images: list[dict[str, str]] = field(default_factory=list)  # {"url"} or {"media_type","data"}
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"id", "name", "arguments"}
    tool_results: list[dict[str, str]] = field(default_factory=list)  # {"id", "content"}


@dataclass(slots=True)
class Parsed:
    """A request as the fake understood it (kept in stats as ``last_request``)."""

    model: str
    stream: bool
    system: str = ""
    turns: list[Turn] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    json_mode: bool = False
    schema: Any = None
    forced_tool: str = ""  # the request names the tool the model must call
    forced_json: bool = False  # ...and that tool is how the answer comes as JSON
    tool_choice: str = "auto"  # "auto", "required" (some tool) or "none" (no tool call)
    logprobs: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    def input_tokens(self) -> int:
        words = len(self.system.split())
        for turn in self.turns:
            words += len(turn.text.split()) + 85 * len(turn.images)
            words += sum(len(str(r["content"]).split()) for r in turn.tool_results)
            words += sum(len(json.dumps(c["arguments"]).split()) for c in turn.tool_calls)
        return max(1, words)


@dataclass(slots=True)
class Answer:
    """What the fake model says, before a vendor encodes it."""

    text: str = ""
    # {"id", "name", "arguments"} and, for arguments sent as text that is not their JSON,
    # "text" (see arguments_text)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish: str = "stop"  # "stop", "tool_calls" or "length" (stopped at max_tokens)
    input_tokens: int = 0
    output_tokens: int = 0
    usage_reported: bool = True
    cached_tokens: int = 0  # of input_tokens, read from the prompt cache
    cache_written: int = 0  # of input_tokens, written to it (Anthropic)
    refused: bool = False  # the text is the model's refusal
    failed_finish: str = ""  # Gemini: a finish reason that came with no content

    def pieces(self) -> list[str]:
        """The text as streamed: one word (with its trailing space) per chunk."""
        return re.findall(r"\S+\s*", self.text) or ([self.text] if self.text else [])

    def logprobs(self) -> list[float]:
        """Deterministic per-piece log-probabilities."""
        return [-LOGPROB_STEP * (1 + i % 3) for i in range(len(self.pieces()))]


class BadRequest(Exception):
    """The request is one the real API would refuse; answered with the vendor's error."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Vendor(Protocol):
    """A vendor's wire format."""

    name: str
    api_prefix: str  # what a provider's base_url appends to the server root ("" or "/v1")

    def routes(self, handle: Callable[..., Any]) -> list[web.RouteDef]:
        """The API routes; each calls ``handle(request, model=..., stream=...)``."""
        ...

    def check_auth(self, request: web.Request) -> BadRequest | None: ...

    def parse(self, body: Any, model: str | None, stream: bool) -> Parsed: ...

    def error_body(self, status: int, message: str) -> dict[str, Any]: ...

    def error_headers(self, status: int) -> dict[str, str]: ...

    def call_id(self, index: int) -> str: ...

    def unary(self, parsed: Parsed, answer: Answer) -> dict[str, Any]: ...

    def frames(self, parsed: Parsed, answer: Answer) -> tuple[list[bytes], list[bytes]]:
        """The stream as (body frames, terminal frames): truncation drops the latter."""
        ...

    def stream_error(self, message: str = "") -> bytes:
        """The vendor's in-stream error event (an overloaded or internal error), with
        ``message`` or its usual one."""
        ...

    def account_error(self, kind: str) -> tuple[int, dict[str, Any]]:
        """The status and body for an account problem: ``quota`` (out of quota or
        credit) or ``bad-key`` (the key is not valid), as this vendor answers it."""
        ...


@dataclass(slots=True)
class Stats:
    requests: int = 0
    completed: int = 0
    dropped: int = 0
    client_disconnects: int = 0
    in_flight: int = 0
    by_behaviour: Counter[str] = field(default_factory=Counter)
    last_request: dict[str, Any] | None = None
    last_body: Any = None


class FakeServer:
    """One fake vendor API with its control API."""

    def __init__(self, vendor: Vendor, *, latency_ms: float = 0, chunk_delay_ms: float = 0):
        self.vendor = vendor
        self.latency_s = latency_ms / 1000
        self.chunk_delay_s = chunk_delay_ms / 1000
        self.script: deque[Behaviour] = deque()
        self.stats = Stats()

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(self.vendor.routes(self.handle))
        app.add_routes(
            [
                web.post("/_control/script", self._script),
                web.get("/_control/stats", self._stats),
                web.post("/_control/reset", self._reset),
            ]
        )
        return app

    async def _script(self, request: web.Request) -> web.Response:
        body = await request.json()
        names = body.get("behaviours") or [body["behaviour"]] * int(body.get("count", 1))
        self.script.extend(Behaviour.parse(str(n)) for n in names)
        return web.json_response({"queued": len(self.script)})

    async def _stats(self, request: web.Request) -> web.Response:
        data = asdict(self.stats)
        data["by_behaviour"] = dict(self.stats.by_behaviour)
        data["scripted"] = len(self.script)
        return web.json_response(data)

    async def _reset(self, request: web.Request) -> web.Response:
        self.script.clear()
        self.stats = Stats()
        return web.json_response({"reset": True})

    async def handle(
        self, request: web.Request, *, model: str | None = None, stream: bool | None = None
    ) -> web.StreamResponse:
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        try:
            return await self._answer(request, model, stream)
        finally:
            stats.in_flight -= 1

    async def _answer(
        self, request: web.Request, model: str | None, stream: bool | None
    ) -> web.StreamResponse:
        vendor = self.vendor
        denied = vendor.check_auth(request)
        if denied is not None:
            return self._error(denied.status, denied.message)
        try:
            body = json.loads(await request.read())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self._error(400, f"The request body is not valid JSON: {exc}")
        try:
            parsed = vendor.parse(body, model, bool(stream))
        except BadRequest as exc:
            return self._error(exc.status, exc.message)
        behaviour = self.script.popleft() if self.script else Behaviour.parse(parsed.model)
        self.stats.by_behaviour[behaviour.kind] += 1
        self.stats.last_request = asdict(parsed)
        self.stats.last_body = body
        delay = self.latency_s + (behaviour.value / 1000 if behaviour.kind == "slow" else 0)
        if not await self._wait(request, delay):
            return self._client_gone()
        kind = behaviour.kind
        if kind == "drop":
            self.stats.dropped += 1
            _reset_connection(request)
            return web.Response()  # never sent: aiohttp sees the closed transport
        if kind == "error":
            return self._error(int(behaviour.value), "")
        if kind in ("quota", "bad-key"):
            status, body = vendor.account_error(kind)
            self.stats.completed += 1
            return web.json_response(body, status=status, headers=vendor.error_headers(status))
        if kind == "leak-key" or (kind == "leak-key-mid-stream" and not parsed.stream):
            return self._error(401, _leaked_key(request))
        if kind in ("ratelimit", "ratelimit-date"):
            seconds = behaviour.value
            retry_after = (
                email.utils.formatdate(time.time() + seconds, usegmt=True)
                if kind == "ratelimit-date"
                else f"{seconds:g}"
            )
            return self._error(429, "", {"Retry-After": retry_after})
        if kind == "malformed" and not parsed.stream:
            self.stats.completed += 1
            return web.Response(
                body=b'{"id": "broken", "choices": [', content_type="application/json"
            )
        try:
            answer = self._compose(behaviour, parsed)
        except BadRequest as exc:
            return self._error(exc.status, exc.message)
        if not parsed.stream:
            if kind == "huge-chunked":
                return await self._chunked(request, vendor.unary(parsed, answer))
            self.stats.completed += 1
            return web.json_response(vendor.unary(parsed, answer))
        return await self._stream(request, behaviour, parsed, answer)

    async def _chunked(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        """``body`` as JSON sent in 64 KiB chunks, with no Content-Length."""
        data = json.dumps(body).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            for start in range(0, len(data), 65536):
                await response.write(data[start : start + 65536])
            await response.write_eof()
        except ConnectionResetError:
            self.stats.client_disconnects += 1
            return response
        self.stats.completed += 1
        return response

    async def _stream(
        self, request: web.Request, behaviour: Behaviour, parsed: Parsed, answer: Answer
    ) -> web.StreamResponse:
        body, tail = self.vendor.frames(parsed, answer)
        kind = behaviour.kind
        if kind == "malformed":
            body, tail = [b'data: {"broken": tru\n\n'], []
        elif kind == "truncated-stream":
            tail = []
        elif kind in ("drop-mid-stream", "error-mid-stream", "leak-key-mid-stream"):
            body = body[: max(2, len(body) // 2)]
            tail = [self.vendor.stream_error()] if kind == "error-mid-stream" else []
            if kind == "leak-key-mid-stream":
                tail = [self.vendor.stream_error(_leaked_key(request))]
        gap = behaviour.value / 1000 if kind == "drip" else self.chunk_delay_s
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        try:
            await response.prepare(request)
            for index, frame in enumerate([*body, *tail]):
                if index and not await self._wait(request, gap):
                    raise ConnectionResetError("client went away mid-stream")
                await response.write(frame)
            if kind == "drop-mid-stream":
                await asyncio.sleep(0.01)  # let the chunks leave before the reset
                self.stats.dropped += 1
                _reset_connection(request)
                return response
            await response.write_eof()
        except ConnectionResetError:
            self.stats.client_disconnects += 1
            return response
        self.stats.completed += 1
        return response

    def _compose(self, behaviour: Behaviour, parsed: Parsed) -> Answer:
        answer = Answer(input_tokens=parsed.input_tokens())
        calls = behaviour.kind == "tools" or parsed.tool_choice == "required"
        if behaviour.kind == "cached":
            answer.text = OK_TEXT
            answer.cached_tokens = answer.input_tokens // 2
            answer.cache_written = answer.input_tokens // 4
        elif behaviour.kind in ("no-tools", "no-usage", "malformed-call"):
            answer.text = OK_TEXT  # (no-tools: ignores tools and tool_choice)
            answer.usage_reported = behaviour.kind != "no-usage"
            answer.failed_finish = "MALFORMED_FUNCTION_CALL" if "call" in behaviour.kind else ""
        elif behaviour.kind == "refusal":
            answer.text, answer.refused = REFUSAL_TEXT, True
        elif behaviour.kind in ("huge", "huge-chunked"):
            size = int(behaviour.value * 1024)
            answer.text = (_HUGE_WORD * (size // len(_HUGE_WORD) + 1))[:size]
        elif behaviour.kind in _BAD_ARGUMENTS:
            if not parsed.tools:
                raise BadRequest(f"model {behaviour.kind!r} needs a tool in the request")
            arguments, text = _BAD_ARGUMENTS[behaviour.kind]
            call = {"id": self.vendor.call_id(0), "name": parsed.tools[0], "arguments": arguments}
            if behaviour.kind == "bad-tool-name":
                call["id"] = call["name"] = ""
            if text is not None:
                call["text"] = text
            answer.tool_calls = [call]
            answer.finish = "length" if behaviour.kind == "cut-tool-args" else "tool_calls"
        elif parsed.forced_tool or (calls and parsed.tool_choice != "none"):
            if not parsed.tools:
                raise BadRequest("model 'tools' needs at least one tool in the request")
            name = parsed.forced_tool or parsed.tools[0]
            arguments = JSON_ANSWER if parsed.forced_json else TOOL_ARGUMENTS
            answer.tool_calls = [
                {"id": self.vendor.call_id(0), "name": name, "arguments": arguments}
            ]
            answer.finish = "tool_calls"
        elif behaviour.kind == "json-fenced":
            answer.text = "```json\n" + json.dumps(JSON_ANSWER) + "\n```"
        elif behaviour.kind == "json" or parsed.json_mode:
            answer.text = json.dumps(JSON_ANSWER)
        elif behaviour.kind == "echo":
            answer.text = _last_user_text(parsed)
        else:
            answer.text = OK_TEXT
        answer.output_tokens = len(answer.pieces()) + sum(
            len(json.dumps(c["arguments"]).split()) + 5 for c in answer.tool_calls
        )
        return answer

    def _error(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.stats.completed += 1
        return web.json_response(
            self.vendor.error_body(status, message),
            status=status,
            headers={**self.vendor.error_headers(status), **(headers or {})},
        )

    def _client_gone(self) -> web.StreamResponse:
        self.stats.client_disconnects += 1
        return web.Response(status=499)  # never sent: the client has gone

    async def _wait(self, request: web.Request, seconds: float) -> bool:
        """Sleep ``seconds``; False as soon as the client has closed the connection."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            transport = request.transport
            if transport is None or transport.is_closing():
                return False
            remaining = deadline - loop.time()
            if remaining <= 0:
                return True
            await asyncio.sleep(min(remaining, 0.01))


def _last_user_text(parsed: Parsed) -> str:
    for turn in reversed(parsed.turns):
        if turn.tool_results:
            return "\n".join(str(r["content"]) for r in turn.tool_results)
        if turn.role == "user" and turn.text:
            return turn.text
    return ""


def _leaked_key(request: web.Request) -> str:
    """A message repeating the credentials ``request`` carried: the key masked, as OpenAI's
    API shows a wrong one, then the header's value whole and the key alone, as some
    OpenAI-compatible servers and proxies echo them."""
    names = ("Authorization", "x-api-key", "x-goog-api-key")
    sent = next((v for v in (*map(request.headers.get, names), request.query.get("key")) if v), "")
    key = sent.removeprefix("Bearer ").strip()
    masked = key[:8] + "*" * max(0, len(key) - 12) + key[-4:]
    return f"Incorrect API key provided: {masked}. Received {sent!r}, key {key}."


def _reset_connection(request: web.Request) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), as a crashed peer would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def arguments_text(call: dict[str, Any]) -> str:
    """A call's arguments as a vendor that sends them as text (OpenAI; Anthropic's
    stream) sends them."""
    text = call.get("text")
    return str(text) if text is not None else json.dumps(call["arguments"])


def sse(data: Any, event: str = "", *, crlf: bool = False) -> bytes:
    """One SSE frame: an optional ``event:`` line and one ``data:`` line of JSON."""
    end = "\r\n" if crlf else "\n"
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}{end}" if event else ""
    return f"{head}data: {text}{end}{end}".encode()


@dataclass(frozen=True, slots=True)
class Running:
    """A fake server listening on localhost."""

    server: FakeServer
    root: str  # http://127.0.0.1:PORT

    @property
    def base_url(self) -> str:
        """What a provider's ``base_url`` (or an SDK's) should be."""
        return self.root + self.server.vendor.api_prefix


@contextlib.asynccontextmanager
async def serve(
    vendor: Vendor,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    latency_ms: float = 0,
    chunk_delay_ms: float = 0,
) -> AsyncIterator[Running]:
    """Run a fake in the current event loop for the duration of the block."""
    fake = FakeServer(vendor, latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms)
    runner = web.AppRunner(fake.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    try:
        yield Running(fake, f"http://{bound_host}:{bound_port}")
    finally:
        await runner.cleanup()


def main(vendor: Vendor, argv: Sequence[str] | None = None) -> None:
    """Run one fake as its own process; prints its base URL as the one stdout line."""
    parser = argparse.ArgumentParser(description=f"Fake {vendor.name} API for tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fixed delay per answer")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay between chunks")
    args = parser.parse_args(argv)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with serve(
            vendor,
            host=args.host,
            port=args.port,
            latency_ms=args.latency_ms,
            chunk_delay_ms=args.chunk_delay_ms,
        ) as running:
            print(running.base_url, flush=True)
            await stop.wait()

    asyncio.run(run())
