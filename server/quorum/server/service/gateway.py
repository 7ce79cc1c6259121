"""The front of RouteService: authenticate, admit, observe.

:class:`Gateway` is the server's generic handler for RouteService: for each call grpc
asks it for the method's handler, and it hands back the servicer's handler wrapped once
per method. (A generic handler costs grpc.aio one plain function call per RPC; a server
interceptor would cost a coroutine chain.) For every RouteService RPC, before the
servicer runs:

1. **Authenticate** the ``authorization: Bearer <token>`` metadata (when auth is on);
   missing or unknown credentials → UNAUTHENTICATED.
2. **Admit** it under the in-flight limits (:mod:`quorum.server.service.admission`); beyond
   them → RESOURCE_EXHAUSTED with RetryInfo. While calls queue in gRPC core for longer
   than ``admission.max_queue_delay_ms`` (:mod:`quorum.server.service.shedding`) a share of new
   Route and RouteStream calls is refused the same way before its request is parsed,
   the cheapest answer gRPC allows.
3. Run the servicer **as the tenant** (:func:`quorum.server.service.auth.acting_as`), inside a
   trace span when tracing is on, with a :class:`~quorum.server.observability.metrics.RequestRecord`
   the router fills in; afterwards count ``quorum_requests_total`` with the final code
   and observe the total duration.

Health and reflection are other generic handlers and never pass through here: probes
and ``grpcurl list`` need no token.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import grpc
import structlog

from quorum.route.v1 import route_service_pb2
from quorum.server.errors import QuorumError, ResourceExhausted
from quorum.server.observability.metrics import Metrics, close_record, open_record
from quorum.server.observability.tracing import Tracing
from quorum.server.service.admission import Admission, Ticket, hold
from quorum.server.service.auth import acting_as
from quorum.server.service.shedding import LoadShedder
from quorum.server.service.status import status_for, to_grpc
from quorum.server.tenants import ANONYMOUS, TenantPolicy, Tenants

log = structlog.get_logger("quorum.gateway")

SERVICE = route_service_pb2.DESCRIPTOR.services_by_name["RouteService"].full_name
_PREFIX = f"/{SERVICE}/"
_ROUTE = f"{_PREFIX}Route"
_COUNTED = frozenset({_ROUTE, f"{_PREFIX}RouteStream"})

Context = grpc.aio.ServicerContext[Any, Any]
Metadata = Sequence[tuple[str, str | bytes]]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def _ignore(data: bytes) -> None:
    """The deserializer of a refused call: its request is never read."""
    return None


async def _answer_probe(request: Any, context: Context) -> bytes:
    return b""


# The shedder's queue probe: answered as soon as the server takes it, nothing parsed.
_PROBE_ANSWER: Handler = grpc.unary_unary_rpc_method_handler(
    _answer_probe, request_deserializer=_ignore
)


def _code_name(context: Context, exc: BaseException | None) -> str:
    code = cast(Any, context).code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int):
        for member in grpc.StatusCode:
            if member.value[0] == code:
                return str(member.name)
    if isinstance(exc, QuorumError):
        return str(exc.code.name)
    return "CANCELLED" if exc is not None and isinstance(exc, BaseException) else "UNKNOWN"


def _let_go(abort: grpc.aio.AbortError) -> grpc.aio.AbortError:
    """``abort`` with no traceback and no context, to be raised again from the gateway.

    grpc keeps a call's abort on the call's state, which the frames of the abort's
    traceback reference (each holds the servicer context): a reference cycle that only
    the cyclic collector frees, and it runs seldom (see ``app.settle_garbage_collector``),
    as a refused request allocates little. Every frame in the cycle kept the request it
    was handling alive until then: 60 refused 19 MB requests held 1.3 GB. Raised again
    from here (whose frame no longer holds the request), the cycle keeps only the gateway
    frame and the status; the error was logged where it arose."""
    abort.__context__ = None
    return abort.with_traceback(None)


if TYPE_CHECKING:
    _GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:
    _GenericHandler = grpc.GenericRpcHandler


class Gateway(_GenericHandler):
    """Authentication, admission, metrics and tracing around every RouteService RPC."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        tenants: Tenants,
        admission: Admission,
        metrics: Metrics,
        tracing: Tracing | None = None,
        shedder: LoadShedder | None = None,
    ) -> None:
        """``handlers``: the servicer's method handlers by full method path
        (``/quorum.route.v1.RouteService/Route``), each wrapped here once."""
        self._tenants = tenants
        # Authentication off and no tenant to name: every call is the anonymous tenant's,
        # known before its request is read (so a refused request is counted as its).
        self._known_tenant = ANONYMOUS if not tenants.auth_required and not tenants.policies else ""
        self._admission = admission
        self._metrics = metrics
        self._tracing = tracing
        self._shedder = shedder
        overloaded = ResourceExhausted(
            "server overloaded: calls are queueing before they are served; retry shortly",
            retry_after_s=admission.retry_after_s,
            reason="OVERLOADED",
        )
        self._overloaded = to_grpc(status_for(overloaded))
        self._refusals: dict[str, Handler] = {}
        # Each call reads its own metadata from the servicer context, so nothing is
        # allocated per call here.
        self._wrapped = {method: self._wrap(method, h) for method, h in handlers.items()}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        """The handler for one call; ``None`` for a method of another service."""
        method: str = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            return None  # health, reflection, or unknown (grpc answers UNIMPLEMENTED)
        shedder = self._shedder
        if shedder is not None and method in _COUNTED:
            if method == _ROUTE and shedder.is_probe(handler_call_details.invocation_metadata):
                return _PROBE_ANSWER
            if shedder.shed():
                return self._refusal(method)
        return wrapped

    def _refusal(self, method: str) -> Handler:
        """A handler that refuses at once, without parsing the request."""
        self._metrics.shed("queue_delay")
        refusal = self._refusals.get(method)
        if refusal is not None:
            return refusal
        status = self._overloaded

        async def refuse(request: Any, context: Context) -> bytes:
            # Setting the status and returning is much cheaper than aborting (no
            # exception through grpc.aio); the client sees only the status.
            context.set_code(status.code)
            context.set_details(status.details)
            context.set_trailing_metadata(status.trailing_metadata)
            return b""

        async def refuse_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            context.set_code(status.code)
            context.set_details(status.details)
            context.set_trailing_metadata(status.trailing_metadata)
            return
            yield  # pragma: no cover - makes this an async generator

        if method.endswith("/Route"):
            refusal = grpc.unary_unary_rpc_method_handler(refuse, request_deserializer=_ignore)
        else:
            refusal = grpc.unary_stream_rpc_method_handler(
                refuse_stream, request_deserializer=_ignore
            )
        self._refusals[method] = refusal
        return refusal

    def _wrap(self, method: str, handler: Handler) -> Handler:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, cast(Any, handler.unary_unary)),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, cast(Any, handler.unary_stream)),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _span(self, method: str, metadata: Metadata) -> AbstractContextManager[Any]:
        return self._tracing.rpc(method, metadata) if self._tracing else nullcontext()

    async def _admit(
        self, method: str, metadata: Metadata, context: Context
    ) -> tuple[TenantPolicy | None, Ticket | None]:
        """Authenticate every call; count RouteService's model calls against the
        in-flight limits (Plan, ListModels and Feedback call no model and are never shed)."""
        try:
            tenant = self._tenants.authenticate(*(v for k, v in metadata if k == "authorization"))
            return tenant, self._admission.admit(tenant) if method in _COUNTED else None
        except QuorumError as exc:
            log.info("rpc_refused", reason=exc.reason, code=exc.code.name, error=exc.message)
            await cast(Any, context).abort_with_status(to_grpc(status_for(exc)))
            raise  # unreachable: abort raises

    def _finish(self, method: str, record_tenant: str, record: Any, code: str, t0: float) -> None:
        if method in _COUNTED:
            self._metrics.request(record_tenant, record.strategy, record.model, code)
            self._metrics.stage("total", time.perf_counter() - t0)
        if self._tracing is not None:
            self._tracing.annotate({"rpc.grpc.status_code": code, "quorum.tenant": record_tenant})

    def _unary(
        self, method: str, inner: Callable[[Any, Context], Awaitable[Any]]
    ) -> Callable[[Any, Context], Awaitable[Any]]:
        async def behaviour(request: Any, context: Context) -> Any:
            t0 = time.perf_counter()
            metadata: Metadata = tuple(context.invocation_metadata() or ())
            record, token = open_record()
            record.tenant = self._known_tenant or record.tenant  # also if refused at once
            code = "OK"
            ticket: Ticket | None = None
            try:
                with self._span(method, metadata):
                    try:
                        tenant, ticket = await self._admit(method, metadata, context)
                        record.tenant = tenant.name if tenant else record.tenant
                        with acting_as(tenant):
                            return await inner(request, context)
                    except grpc.aio.AbortError as exc:
                        code = _code_name(context, exc)
                        del request  # see _let_go
                        raise _let_go(exc) from None
                    except BaseException as exc:
                        code = _code_name(context, exc)
                        raise
                    finally:
                        self._finish(method, record.tenant or "_none", record, code, t0)
            finally:
                if ticket is not None:
                    ticket.release()
                close_record(token)

        return behaviour

    def _stream(
        self,
        method: str,
        inner: Callable[[Any, Context], AsyncIterator[Any]],
    ) -> Callable[[Any, Context], AsyncIterator[Any]]:
        async def behaviour(request: Any, context: Context) -> AsyncIterator[Any]:
            t0 = time.perf_counter()
            metadata: Metadata = tuple(context.invocation_metadata() or ())
            record, token = open_record()
            record.tenant = self._known_tenant or record.tenant  # also if refused at once
            code = "OK"
            ticket: Ticket | None = None
            try:
                with self._span(method, metadata):
                    try:
                        tenant, ticket = await self._admit(method, metadata, context)
                        record.tenant = tenant.name if tenant else record.tenant
                        if ticket is not None:
                            hold(ticket)
                        with acting_as(tenant):
                            async for item in inner(request, context):
                                yield item
                    except grpc.aio.AbortError as exc:
                        code = _code_name(context, exc)
                        del request  # see _let_go
                        raise _let_go(exc) from None
                    except BaseException as exc:
                        code = _code_name(context, exc)
                        raise
                    finally:
                        code = record.failed_code if code == "OK" and record.failed_code else code
                        self._finish(method, record.tenant or "_none", record, code, t0)
            finally:
                if ticket is not None:
                    ticket.release()
                close_record(token)

        return behaviour
