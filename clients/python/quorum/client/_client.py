"""Sync and async clients with default deadlines and decoded errors."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import Any

import grpc

from quorum.client._errors import error_from_rpc
from quorum.route.v1 import route_service_pb2 as svc
from quorum.route.v1 import route_service_pb2_grpc as svc_grpc
from quorum.route.v1 import types_pb2 as pb

DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 366 * 86400.0  # gRPC turns far larger deadlines into an expired one


def deadline_s(timeout: float | None, default: float | None) -> float | None:
    """``timeout`` (or ``default`` when None), checked: a finite number of seconds from 0
    to a year. Infinite, NaN or huge values would otherwise fail at once as an expired
    deadline, as if the server had been slow. None for both: no deadline (a client
    built with ``timeout=None``)."""
    seconds = default if timeout is None else timeout
    if seconds is None:
        return None
    if not (isinstance(seconds, int | float) and math.isfinite(seconds)) or not (
        0 <= seconds <= MAX_TIMEOUT_S
    ):
        raise ValueError(
            f"timeout must be a finite number of seconds from 0 to {MAX_TIMEOUT_S:.0f}, "
            f"got {seconds!r}"
        )
    return float(seconds)


def user(text: str) -> pb.Message:
    """A user message."""
    return pb.Message(role=pb.ROLE_USER, content=text)


def build_request(
    messages: Sequence[pb.Message] | str,
    *,
    hints: pb.RoutingHints | None = None,
    params: pb.GenerationParams | None = None,
    request_id: str = "",
    tenant: str = "",
) -> pb.RouteRequest:
    """A RouteRequest from messages (or one user prompt) and optional hints/params."""
    if isinstance(messages, str):
        messages = [user(messages)]
    return pb.RouteRequest(
        request_id=request_id, messages=list(messages), hints=hints, params=params, tenant=tenant
    )


class QuorumClient:
    """Blocking client. Every call has a deadline (``timeout`` seconds)."""

    def __init__(
        self,
        target: str,
        *,
        channel: grpc.Channel | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._channel = channel or grpc.insecure_channel(target)
        self._stub = svc_grpc.RouteServiceStub(self._channel)
        self._timeout = deadline_s(timeout, DEFAULT_TIMEOUT_S)
        self._metadata = tuple(metadata)

    def __enter__(self) -> QuorumClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return method(
                request,
                timeout=deadline_s(timeout, self._timeout),
                metadata=self._metadata,
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

    def route(
        self,
        request: pb.RouteRequest | Sequence[pb.Message] | str,
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> pb.RouteResponse:
        if not isinstance(request, pb.RouteRequest):
            request = build_request(request, **kwargs)
        result: pb.RouteResponse = self._call(self._stub.Route, request, timeout)
        return result

    def plan(
        self,
        request: pb.RouteRequest | Sequence[pb.Message] | str,
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> svc.PlanResponse:
        if not isinstance(request, pb.RouteRequest):
            request = build_request(request, **kwargs)
        result: svc.PlanResponse = self._call(
            self._stub.Plan, svc.PlanRequest(request=request), timeout
        )
        return result

    def list_models(
        self, *, tier: str = "", timeout: float | None = None
    ) -> svc.ListModelsResponse:
        result: svc.ListModelsResponse = self._call(
            self._stub.ListModels, svc.ListModelsRequest(tier=tier), timeout
        )
        return result

    def feedback(
        self, request: svc.FeedbackRequest, *, timeout: float | None = None
    ) -> svc.FeedbackResponse:
        result: svc.FeedbackResponse = self._call(self._stub.Feedback, request, timeout)
        return result

    def route_stream(
        self,
        request: pb.RouteRequest | Sequence[pb.Message] | str,
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Iterator[svc.RouteStreamResponse]:
        if not isinstance(request, pb.RouteRequest):
            request = build_request(request, **kwargs)
        call: Any = self._stub.RouteStream(
            svc.RouteStreamRequest(request=request),
            timeout=deadline_s(timeout, self._timeout),
            metadata=self._metadata,
        )
        try:
            yield from call
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        finally:
            call.cancel()  # leaving the loop early cancels the call (a no-op once it is done)


class AsyncQuorumClient:
    """asyncio client (``grpc.aio``). Every call has a deadline (``timeout`` seconds)."""

    def __init__(
        self,
        target: str,
        *,
        channel: grpc.aio.Channel | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._channel = channel or grpc.aio.insecure_channel(target)
        self._stub = svc_grpc.RouteServiceStub(self._channel)
        self._timeout = deadline_s(timeout, DEFAULT_TIMEOUT_S)
        self._metadata = tuple(metadata)

    async def __aenter__(self) -> AsyncQuorumClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)

    async def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return await method(
                request,
                timeout=deadline_s(timeout, self._timeout),
                metadata=self._metadata,
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

    async def route(
        self,
        request: pb.RouteRequest | Sequence[pb.Message] | str,
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> pb.RouteResponse:
        if not isinstance(request, pb.RouteRequest):
            request = build_request(request, **kwargs)
        result: pb.RouteResponse = await self._call(self._stub.Route, request, timeout)
        return result

    async def plan(
        self,
        request: pb.RouteRequest | Sequence[pb.Message] | str,
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> svc.PlanResponse:
        if not isinstance(request, pb.RouteRequest):
            request = build_request(request, **kwargs)
        result: svc.PlanResponse = await self._call(
            self._stub.Plan, svc.PlanRequest(request=request), timeout
        )
        return result

    async def list_models(
        self, *, tier: str = "", timeout: float | None = None
    ) -> svc.ListModelsResponse:
        result: svc.ListModelsResponse = await self._call(
            self._stub.ListModels, svc.ListModelsRequest(tier=tier), timeout
        )
        return result

    async def feedback(
        self, request: svc.FeedbackRequest, *, timeout: float | None = None
    ) -> svc.FeedbackResponse:
        result: svc.FeedbackResponse = await self._call(self._stub.Feedback, request, timeout)
        return result

    async def route_stream(
        self,
        request: pb.RouteRequest | Sequence[pb.Message] | str,
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[svc.RouteStreamResponse]:
        if not isinstance(request, pb.RouteRequest):
            request = build_request(request, **kwargs)
        call = self._stub.RouteStream(
            svc.RouteStreamRequest(request=request),
            timeout=deadline_s(timeout, self._timeout),
            metadata=self._metadata,
        )
        try:
            async for event in call:
                yield event
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        finally:
            call.cancel()  # leaving the loop early cancels the call (a no-op once it is done)
