"""The OpenAI-compatible HTTP listener: routes, limits and lifecycle.

``POST /v1/chat/completions`` (unary or ``stream: true``), ``GET /v1/models`` and
``GET /v1/models/{id}``, served by aiohttp in the gRPC server's event loop over the same
:class:`~quorum.server.router.Router`. Bodies are read (and gzip or deflate undone) by
:mod:`~quorum.server.frontdoor.body`, requests validated by
:mod:`~quorum.server.frontdoor.translate`, errors answered by
:mod:`~quorum.server.frontdoor.errors`, streams written by
:mod:`~quorum.server.frontdoor.stream`.

:class:`HttpFrontDoor` starts and drains the listener: on drain it stops accepting
connections, answers new requests on open connections with 503, gives in-flight ones
the grace period, then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware

from quorum.server.domain import RouteRequest
from quorum.server.errors import (
    ConfigError,
    FieldViolation,
    InvalidRequest,
    ListenError,
    QuorumError,
)
from quorum.server.frontdoor import naming
from quorum.server.frontdoor.account import plain, result_headers, route_headers
from quorum.server.frontdoor.body import read_json
from quorum.server.frontdoor.errors import http_error as to_http_error
from quorum.server.frontdoor.errors import (
    internal_error,
    log_internal_error,
    loggable,
    plain_error,
)
from quorum.server.frontdoor.gate import Gate
from quorum.server.frontdoor.stream import SseResponder, StreamItem, error_response
from quorum.server.frontdoor.translate import ChatRequest, completion_body, parse_chat_request
from quorum.server.names import NAME as TENANT_NAME
from quorum.server.names import NAME_RULE, REQUEST_ID, REQUEST_ID_RULE, new_request_id
from quorum.server.observability.logs import request_scope
from quorum.server.router import Router
from quorum.server.service.admission import Admission, work_done
from quorum.server.state import model_health

log = structlog.get_logger("quorum.frontdoor")


class _ProtocolLog(logging.Handler):
    """aiohttp's own error lines, as structured log lines like every other: a request it
    could not read (an oversized header, a malformed line) is the client's doing, one
    warning without a traceback; anything else keeps its traceback."""

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            log.warning("http_request_unreadable", error=type(exc).__name__, status=exc.code)
        else:
            log.error("http_server_error", message=record.getMessage(), exc_info=record.exc_info)


_PROTOCOL_LOG = logging.getLogger("quorum.frontdoor.protocol")
_PROTOCOL_LOG.addHandler(_ProtocolLog())
_PROTOCOL_LOG.propagate = False  # not also to the root logger's plain-text stderr

CHAT_METHOD = "/v1/chat/completions"
TENANT_HEADER = "x-quorum-tenant"
TIMEOUT_HEADER = "x-quorum-timeout-s"
REQUEST_ID_HEADERS = ("x-quorum-request-id", "x-request-id")
MAX_TIMEOUT_S = 3600.0
# After the grace period, handlers still running get this long before they are cancelled.
_CANCEL_AFTER_S = 0.25


def parse_address(address: str) -> tuple[str | None, int]:
    """``HOST:PORT`` (``[::]:8080``, ``0.0.0.0:8080``, ``:8080``) → (host or None, port)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        where = "server.http_address (--http-address)"
        raise ConfigError([f"{where} {address!r}: expected HOST:PORT, e.g. [::]:8080"])
    host = host.removeprefix("[").removesuffix("]")
    return (host or None), int(port_text)


@dataclass
class _State:
    """What the handlers share: the router, the gate, and the drain bookkeeping."""

    router: Router
    gate: Gate
    started: int = field(default_factory=lambda: int(time.time()))
    in_flight: int = 0
    draining: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)


_STATE = web.AppKey("quorum_state", _State)


def _request_id(request: web.Request) -> str:
    for header in REQUEST_ID_HEADERS:
        value = request.headers.get(header)
        if value is not None:
            if not REQUEST_ID.fullmatch(value):
                raise InvalidRequest([FieldViolation(header, REQUEST_ID_RULE)])
            return value
    return new_request_id()


def _timeout(request: web.Request) -> float | None:
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_TIMEOUT_S:
        raise InvalidRequest(
            [FieldViolation(TIMEOUT_HEADER, f"must be seconds within (0, {MAX_TIMEOUT_S:g}]")]
        )
    return value


def _tenant(request: web.Request) -> str:
    """The tenant a caller asks to act as (``x-quorum-tenant``); the router checks it
    against the authenticated one, as it does ``RouteRequest.tenant``."""
    value = request.headers.get(TENANT_HEADER, "")
    if value and not TENANT_NAME.fullmatch(value):
        raise InvalidRequest([FieldViolation(TENANT_HEADER, NAME_RULE)])
    return value


async def route_events(
    router: Router, request: RouteRequest, timeout_s: float | None
) -> AsyncGenerator[StreamItem, None]:
    """The Router's events for ``request``, ending with its result; closing this
    generator closes the Router's stream, which cancels the upstream calls."""
    # A chat.completion stream cannot take back text it sent: a stream broken mid-way
    # ends with an error event rather than restarting (and paying for) the next model.
    # The caller's admission place is freed once the work is over, not once the answer
    # is read: a client that stops reading holds no one else up.
    events = router.route_stream(
        request, timeout_s=timeout_s, restart_streams=False, on_settled=work_done
    )
    try:
        async for item in events:
            yield item
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


class _Handlers:
    def __init__(self, state: _State) -> None:
        self.state = state
        self.router = state.router

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        request_id = new_request_id()
        origins: dict[str, str] = {}
        try:
            request_id = _request_id(request)
            with request_scope(request_id):
                async with self.state.gate.serving(request, CHAT_METHOD) as served:
                    chat = await self._parse(request, request_id)
                    origins = dict(chat.origins)
                    timeout_s = _timeout(request)
                    created = int(time.time())
                    if chat.stream:
                        responder = SseResponder(request, chat, created)
                        response = await responder.respond(
                            route_events(self.router, chat.route, timeout_s)
                        )
                        served.code = responder.code
                        return response
                    result = await self.router.route(chat.route, timeout_s=timeout_s)
                    log.info(
                        "http_routed",
                        model=result.model,
                        strategy=plain(result.strategy),
                        attempts=len(result.attempts),
                        cost_usd=round(result.cost_usd, 8),
                        total_ms=round(result.timings.total_ms, 2),
                    )
                    spec = self.router.catalog.models.get(result.model)
                    return web.json_response(
                        completion_body(result, created),
                        headers=result_headers(result, spec.tier if spec else ""),
                    )
        except QuorumError as exc:
            log.info(
                "http_failed", request_id=request_id, reason=exc.reason, error=loggable(exc.message)
            )
            return error_response(
                to_http_error(exc, request_id=request_id, origins=origins),
                route_headers(request_id),
            )
        except asyncio.CancelledError:
            # The client went away (aiohttp cancels the handler: handler_cancellation) or
            # the server is closing; the Router's work, upstream calls included, is
            # cancelled with this task, and the gate counts the request as CANCELLED.
            log.info("http_cancelled", request_id=request_id)
            raise
        except Exception as exc:
            log_internal_error(exc, request_id)
            return error_response(internal_error(request_id), route_headers(request_id))

    async def _parse(self, request: web.Request, request_id: str) -> ChatRequest:
        server = self.router.config.server
        body = await read_json(request, server.max_request_bytes)
        return parse_chat_request(
            body,
            catalog=self.router.catalog,
            policy=self.router.policy,
            max_messages=server.max_messages,
            request_id=request_id,
            agents=self.router.agents.keys(),
            tenant=_tenant(request),
        )

    def _model_entry(self, model_id: str, kind: str, owner: str) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": model_id,
            "object": "model",
            "created": self.state.started,
            "owned_by": owner,
        }
        extension: dict[str, Any] = {"kind": kind}
        spec = self.router.catalog.models.get(model_id) if kind == "model" else None
        if spec is not None:
            health = model_health(self.router.breakers.snapshot(), spec)
            extension.update(
                provider=spec.provider,
                provider_kind=spec.provider_kind,
                tier=spec.tier,
                input_usd_per_mtok=spec.input_usd_per_mtok,
                output_usd_per_mtok=spec.output_usd_per_mtok,
                context_window=spec.context_window,
                capabilities=plain(spec.capabilities),
                breaker_state=plain(health.state),
                simulated=spec.simulated is not None,
            )
        entry["quorum"] = extension
        return entry

    def _entries(self, request: web.Request) -> list[dict[str, Any]]:
        """What the caller's tenant may ask for (all of it when tenants are off)."""
        tenants = self.router.guardrails.tenants
        tenant = tenants.for_request(self.state.gate.authenticate(request), _tenant(request))
        agents = [a for a in self.router.agents if tenant.agents is None or a in tenant.agents]
        use_cases = [
            u
            for u in self.router.policy.use_cases
            if tenant.use_cases is None or u in tenant.use_cases
        ]
        return [
            self._model_entry(*entry)
            for entry in naming.model_entries(tenant.catalog, use_cases, agents)
        ]

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        try:
            return web.json_response({"object": "list", "data": self._entries(request)})
        except QuorumError as exc:
            return error_response(to_http_error(exc))

    async def get_model(self, request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]
        try:
            for entry in self._entries(request):
                if entry["id"] == model:
                    return web.json_response(entry)
            raise naming.unknown_model(
                model,
                "The model `{model}` does not exist on this server (GET /v1/models lists them)",
            )
        except QuorumError as exc:
            return error_response(to_http_error(exc))


def _guard(state: _State) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if state.draining:
            error = plain_error(503, "the server is shutting down; retry", "shutting_down")
            return error_response(error, {"Connection": "close", "Retry-After": "1"})
        state.in_flight += 1
        state.idle.clear()
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status == 404:
                message = f"Unknown request URL: {request.method} {request.path}"
                return error_response(plain_error(404, message, "unknown_url"))
            if exc.status == 405:
                message = f"Method {request.method} is not allowed on {request.path}"
                return error_response(plain_error(405, message, "method_not_allowed"))
            raise
        finally:
            state.in_flight -= 1
            if state.in_flight == 0:
                state.idle.set()

    return guard


def build_app(router: Router, admission: Admission | None = None) -> web.Application:
    """The aiohttp application over ``router``; ``admission`` is the server's one
    in-flight limiter, shared with the gRPC door.

    Serve it with aiohttp's request decompression off (``auto_decompress=False``, as
    :class:`HttpFrontDoor` does): :mod:`~quorum.server.frontdoor.body` undoes the
    ``Content-Encoding`` itself, and would refuse a body aiohttp had already decoded.
    """
    state = _State(router, Gate(router, admission))
    # Bodies a little over the limit still reach validation and get an error naming it.
    max_size = router.config.server.max_request_bytes * 2 + 1024 * 1024
    app = web.Application(client_max_size=max_size, middlewares=[_guard(state)])
    handlers = _Handlers(state)
    app.router.add_post(CHAT_METHOD, handlers.chat_completions)
    app.router.add_get("/v1/models", handlers.list_models)
    app.router.add_get("/v1/models/{model:.+}", handlers.get_model)
    app[_STATE] = state
    return app


class HttpFrontDoor:
    """The HTTP listener's lifecycle: bind, start, drain."""

    def __init__(
        self,
        router: Router,
        address: str,
        admission: Admission | None = None,
        *,
        reuse_port: bool = False,
    ) -> None:
        self.address = address
        self._host, self._port = parse_address(address)
        self._reuse_port = reuse_port
        self._app = build_app(router, admission)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0

    async def start(self) -> None:
        # handler_cancellation: a client that disconnects cancels its handler, and with it
        # the upstream calls, instead of leaving them to run to the provider's timeout.
        # auto_decompress off: a body's Content-Encoding is undone by frontdoor.body, so
        # that a bad or unsupported one is a 400 in OpenAI's shape, not a 500 or plain text.
        runner = web.AppRunner(
            self._app,
            access_log=None,
            shutdown_timeout=_CANCEL_AFTER_S,
            handler_cancellation=True,
            auto_decompress=False,
            logger=_PROTOCOL_LOG,
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_port=self._reuse_port or None)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ListenError(
                "server.http_address", f"cannot bind HTTP address {self.address}: {exc.strerror}"
            ) from exc
        self._runner, self._site = runner, site
        self.port = int(runner.addresses[0][1])

    async def stop(self, grace_s: float) -> None:
        """Refuse new work, give in-flight requests ``grace_s``, then close."""
        if self._runner is None:
            return
        state = self._app[_STATE]
        state.draining = True
        if self._site is not None:
            await self._site.stop()
        if state.in_flight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.idle.wait(), grace_s)
        await self._runner.cleanup()
        self._runner = None
