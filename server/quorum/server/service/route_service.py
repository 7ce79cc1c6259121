"""The gRPC RouteService: protobuf in, domain calls, protobuf out.

Every RPC validates its request through :mod:`quorum.server.service.convert`, calls the
:class:`~quorum.server.router.Router`, and maps errors through
:mod:`quorum.server.service.status` — the only place errors become statuses.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import grpc
import structlog
from google.protobuf.message import DecodeError, Message

from quorum.route.v1 import route_service_pb2 as svc_pb
from quorum.route.v1 import route_service_pb2_grpc as svc_grpc
from quorum.route.v1 import types_pb2 as pb
from quorum.server import domain as d
from quorum.server.errors import FieldViolation, InvalidRequest, QuorumError
from quorum.server.observability.logs import request_scope
from quorum.server.observability.metrics import current_record
from quorum.server.router import Router
from quorum.server.service import convert
from quorum.server.service.admission import work_done
from quorum.server.service.status import internal_status, status_for, to_grpc
from quorum.server.service.wire import bad_utf8_field
from quorum.server.state import model_health

log = structlog.get_logger("quorum.service")

Context = grpc.aio.ServicerContext[Any, Any]


class Undecodable:
    """Stands in for a request whose bytes are not a valid message; ``bad_utf8`` names
    the string field that is not UTF-8, when that is why."""

    def __init__(self, type_name: str, bad_utf8: str | None = None) -> None:
        self.type_name = type_name
        self.bad_utf8 = bad_utf8


def _tolerant(message: type[Message]) -> Callable[[bytes], Any]:
    descriptor = message.DESCRIPTOR
    parser = message.FromString

    def parse(data: bytes) -> Any:
        try:
            return parser(data)
        except DecodeError:
            return Undecodable(descriptor.full_name, bad_utf8_field(data, descriptor))

    return parse


def _reject_undecodable(request: object, field: str) -> None:
    if isinstance(request, Undecodable):
        if request.bad_utf8 is not None:
            raise InvalidRequest([FieldViolation(request.bad_utf8, "is not valid UTF-8")])
        raise InvalidRequest([FieldViolation(field, f"not a valid {request.type_name} message")])


class RouteService(svc_grpc.RouteServiceServicer):
    """Implements quorum.route.v1.RouteService over a :class:`Router`."""

    def __init__(self, router: Router) -> None:
        self._router = router
        server = router.config.server
        self._max_messages = server.max_messages
        self._max_request_bytes = server.max_request_bytes
        self._log_prompts = server.log_prompts
        # The per-request "routed" line is at info: below that level its fields are not
        # even computed.
        self._log_routed = server.log_level in ("debug", "info")

    def _request(self, msg: pb.RouteRequest, prefix: str = "") -> d.RouteRequest:
        return convert.route_request_from_pb(
            msg,
            catalog=self._router.catalog,
            use_cases=self._router.policy.use_cases,
            agents=self._router.agents.keys(),
            max_messages=self._max_messages,
            max_request_bytes=self._max_request_bytes,
            prefix=prefix,
        )

    async def _fail(self, context: Context, exc: BaseException, request_id: str) -> None:
        if isinstance(exc, QuorumError):
            log.info(
                "rpc_failed",
                request_id=request_id,
                reason=exc.reason,
                code=exc.code.name,
                error=exc.message,
            )
            await cast(Any, context).abort_with_status(to_grpc(status_for(exc)))
        log.exception("rpc_internal_error", request_id=request_id)
        await cast(Any, context).abort_with_status(to_grpc(internal_status(request_id)))

    async def Route(  # noqa: N802 - gRPC method name
        self, request: pb.RouteRequest, context: Context
    ) -> pb.RouteResponse:
        request_id = ""
        try:
            _reject_undecodable(request, "request")
            request_id = request.request_id
            routed = self._request(request)
            request_id = routed.request_id
            with request_scope(request_id):
                if self._log_prompts:
                    log.debug("route_prompt", prompt=routed.prompt_text)
                result = await self._router.route(routed, timeout_s=context.time_remaining())
                if self._log_routed:
                    log.info(
                        "routed",
                        model=result.model,
                        strategy=result.strategy.value,
                        task=result.classification.task,
                        difficulty=result.classification.difficulty.name.lower(),
                        attempts=len(result.attempts),
                        cost_usd=round(result.cost_usd, 8),
                        total_ms=round(result.timings.total_ms, 2),
                    )
                return convert.route_response_pb(result)
        except Exception as exc:
            await self._fail(context, exc, request_id)
            raise  # unreachable: abort raises

    async def RouteStream(  # noqa: N802
        self, request: svc_pb.RouteStreamRequest, context: Context
    ) -> AsyncIterator[svc_pb.RouteStreamResponse]:
        """Typed events, the plan first; the account (``final``) or an ``error`` last.

        A request that fails before the plan (invalid, infeasible) gets a gRPC status
        like Route; once events have been sent a failure is the last event instead.
        """
        request_id = ""
        started = False
        try:
            _reject_undecodable(request, "request")
            request_id = request.request.request_id
            routed = self._request(request.request, prefix="request.")
            request_id = routed.request_id
            with request_scope(request_id):
                if self._log_prompts:
                    log.debug("route_prompt", prompt=routed.prompt_text)
                # The caller's place is freed once the work is over, not once it has
                # read the answer: a caller that stops reading holds no one else up.
                stream = self._router.route_stream(
                    routed, timeout_s=context.time_remaining(), on_settled=work_done
                )
                # Closed with this generator (a caller that cancels, a client gone), so
                # the routing task and its upstream calls are cancelled at once.
                async with contextlib.aclosing(stream):
                    async for item in stream:
                        started = True
                        if isinstance(item, d.RouteResult) and self._log_routed:
                            log.info(
                                "routed",
                                model=item.model,
                                strategy=item.strategy.value,
                                attempts=len(item.attempts),
                                cost_usd=round(item.cost_usd, 8),
                                total_ms=round(item.timings.total_ms, 2),
                                streamed=True,
                            )
                        yield convert.stream_event_pb(item)
        except Exception as exc:
            if not started:
                await self._fail(context, exc, request_id)
                raise  # unreachable: abort raises
            record = current_record()
            if record is not None:
                record.failed_code = exc.code.name if isinstance(exc, QuorumError) else "INTERNAL"
            if isinstance(exc, QuorumError):
                log.info(
                    "stream_failed",
                    request_id=request_id,
                    reason=exc.reason,
                    code=exc.code.name,
                    error=exc.message,
                )
                yield convert.stream_error_pb(exc)
            else:
                log.exception("rpc_internal_error", request_id=request_id)
                yield convert.stream_internal_error_pb(request_id)

    async def Plan(  # noqa: N802
        self, request: svc_pb.PlanRequest, context: Context
    ) -> svc_pb.PlanResponse:
        request_id = ""
        try:
            _reject_undecodable(request, "request")
            request_id = request.request.request_id
            routed = self._request(request.request, prefix="request.")
            request_id = routed.request_id
            outcome = await self._router.explain(routed)
            return svc_pb.PlanResponse(
                classification=convert.classification_pb(outcome.classification),
                plan=convert.plan_pb(outcome.plan),
                providers=[convert.provider_status_pb(n, h) for n, h in outcome.providers.items()],
                baseline_model=outcome.baseline_model,
                baseline_estimated_cost_usd=outcome.baseline_estimated_cost_usd,
            )
        except Exception as exc:
            await self._fail(context, exc, request_id)
            raise

    async def ListModels(  # noqa: N802
        self, request: svc_pb.ListModelsRequest, context: Context
    ) -> svc_pb.ListModelsResponse:
        try:
            _reject_undecodable(request, "request")
            if request.tier and request.tier not in self._router.catalog.tiers:
                raise InvalidRequest([FieldViolation("tier", f"unknown tier {request.tier!r}")])
            health = self._router.breakers.snapshot()
            return svc_pb.ListModelsResponse(
                models=[
                    convert.model_info_pb(m, model_health(health, m))
                    for m in self._router.models(request.tier)
                ],
                tiers=list(self._router.catalog.tiers),
            )
        except Exception as exc:
            await self._fail(context, exc, "")
            raise

    async def Feedback(  # noqa: N802
        self, request: svc_pb.FeedbackRequest, context: Context
    ) -> svc_pb.FeedbackResponse:
        request_id = ""
        try:
            _reject_undecodable(request, "request")
            request_id = request.request_id
            feedback = convert.feedback_from_pb(request)
            await self._router.feedback(feedback)
            return svc_pb.FeedbackResponse(recorded=True)
        except Exception as exc:
            await self._fail(context, exc, request_id)
            raise


def route_service_handlers(service: RouteService) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """The service's method handlers by full method path, with request parsers that
    turn corrupt bytes into INVALID_ARGUMENT (the generated registration would answer
    UNKNOWN). :class:`~quorum.server.service.gateway.Gateway` wraps and serves them."""
    described = svc_pb.DESCRIPTOR.services_by_name["RouteService"]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in described.methods:
        in_cls = getattr(svc_pb, method.input_type.name, None) or getattr(
            pb, method.input_type.name
        )
        out_cls = getattr(svc_pb, method.output_type.name, None) or getattr(
            pb, method.output_type.name
        )
        parse = _tolerant(in_cls)
        behaviour = getattr(service, method.name)
        make = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[f"/{described.full_name}/{method.name}"] = make(
            behaviour,
            request_deserializer=parse,
            response_serializer=out_cls.SerializeToString,
        )
    return handlers
