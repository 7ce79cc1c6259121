"""The Python client, sync and async, against a live server.

With ``QUORUM_ADDRESS`` set (as ``scripts/test_clients.sh`` does) the tests use that
server; otherwise they start one in-process on the embedded default config.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from quorum.client import AsyncQuorumClient, QuorumClient, QuorumError, build_request, user
from quorum.client._client import deadline_s
from quorum.route.v1 import route_service_pb2 as svc
from quorum.route.v1 import types_pb2 as pb
from quorum.server.app import create_server
from quorum.server.config import DecisionLogConfig, default_config


@pytest.fixture(scope="module")
async def address() -> AsyncIterator[str]:
    given = os.environ.get("QUORUM_ADDRESS")
    if given:
        yield given
        return
    config = default_config().model_copy(update={"decisions": DecisionLogConfig(sink="none")})
    running = create_server(config, "127.0.0.1:0")
    await running.start()
    try:
        yield f"127.0.0.1:{running.port}"
    finally:
        await running.drain(1.0)


async def test_async_route_plan_models_feedback(address: str) -> None:
    async with AsyncQuorumClient(address, timeout=15) as client:
        routed = await client.route("What is 2+2?")
        assert routed.content
        assert routed.model
        assert routed.attempts
        planned = await client.plan("What is 2+2?")
        assert planned.plan.stages
        models = await client.list_models()
        assert len(models.models) >= 3
        fb = await client.feedback(
            svc.FeedbackRequest(request_id=routed.request_id, kind=svc.FEEDBACK_KIND_THUMBS_UP)
        )
        assert fb.recorded


async def test_async_stream_ends_with_final(address: str) -> None:
    async with AsyncQuorumClient(address, timeout=15) as client:
        events = [e async for e in client.route_stream("Tell me a short fact about tea.")]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "plan"
    assert kinds[-1] == "final"
    text = "".join(e.chunk.text for e in events if e.WhichOneof("event") == "chunk")
    assert text == events[-1].final.content


async def test_async_error_details_are_decoded(address: str) -> None:
    async with AsyncQuorumClient(address, timeout=15) as client:
        with pytest.raises(QuorumError) as info:
            await client.route(pb.RouteRequest())
    err = info.value
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "INVALID_REQUEST"
    assert err.domain == "quorum.dev"
    assert [v.field for v in err.field_violations] == ["messages"]


async def test_async_deadline(address: str) -> None:
    async with AsyncQuorumClient(address) as client:
        with pytest.raises(QuorumError) as info:
            await client.route("Design a distributed system step by step", timeout=0.001)
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_a_zero_timeout_is_zero_not_the_default(address: str) -> None:
    async with AsyncQuorumClient(address, timeout=30) as client:
        started = time.monotonic()
        with pytest.raises(QuorumError) as info:
            await client.route("Design a distributed system step by step", timeout=0)
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("timeout", [float("inf"), float("nan"), 1e300, -1.0])
async def test_a_timeout_that_is_no_deadline_is_refused_before_the_call(
    address: str, timeout: float
) -> None:
    # gRPC would turn these into an expired deadline: DEADLINE_EXCEEDED at once, as if
    # the server had been slow.
    with pytest.raises(ValueError, match="timeout must be a finite number of seconds"):
        AsyncQuorumClient(address, timeout=timeout)
    async with AsyncQuorumClient(address) as client:
        with pytest.raises(ValueError, match="timeout must be"):
            await client.route("hi", timeout=timeout)
        with pytest.raises(ValueError, match="timeout must be"):
            async for _ in client.route_stream("hi", timeout=timeout):
                pass
    with QuorumClient(address) as sync, pytest.raises(ValueError, match="timeout must be"):
        sync.plan("hi", timeout=timeout)


async def test_a_client_built_with_no_timeout_sets_no_deadline(address: str) -> None:
    # As before timeouts were checked: timeout=None is the caller's choice of no deadline.
    assert deadline_s(None, None) is None and deadline_s(None, 30) == 30.0
    async with AsyncQuorumClient(address, timeout=None) as client:
        assert (await client.route("What is 2 + 2?")).content


def _sync_suite(address: str) -> None:
    with QuorumClient(address, timeout=15) as client:
        routed = client.route([user("What is 3+4?")])
        assert routed.content
        planned = client.plan(build_request("hello", hints=pb.RoutingHints(tier="premium")))
        assert planned.plan.stages[0].candidates[0].tier == "premium"
        events = list(client.route_stream("hello"))
        assert events[-1].WhichOneof("event") == "final"
        with pytest.raises(QuorumError) as info:
            client.route("hi", hints=pb.RoutingHints(tier="gold"))
        assert info.value.field_violations[0].field == "hints.tier"


async def test_sync_client(address: str) -> None:
    await asyncio.to_thread(_sync_suite, address)
