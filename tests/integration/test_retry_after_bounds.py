"""An upstream's Retry-After, however large or odd, reaches the caller as a bounded wait."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import openai
import pytest
from aiohttp import web

from quorum.client import QuorumError
from quorum.server.config import parse_config
from quorum.server.resilience.breakers import MAX_COOLDOWN_S
from tests.conftest import running_server
from tests.integration.test_openai_front_door import MATH, front_door, upstream_config


@asynccontextmanager
async def throttling(retry_after: str) -> AsyncIterator[str]:
    """An OpenAI-compatible upstream that answers every call 429 with ``retry_after``."""

    async def chat(_: web.Request) -> web.Response:
        body = {"error": {"message": "slow down", "type": "rate_limit_error"}}
        return web.json_response(body, status=429, headers={"Retry-After": retry_after})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("retry_after", ["inf", "1e30", "99999999999999999999999", "-5", "nan"])
async def test_any_retry_after_is_a_throttled_status_with_a_bounded_wait(
    retry_after: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-test")
    async with throttling(retry_after) as base_url:
        data = upstream_config(base_url, "any")
        async with running_server(parse_config(data)) as (_, client):
            with pytest.raises(QuorumError) as grpc_info:
                await client.route("What is 17 * 23?")
            # A stream that fails after its plan ends with an error event.
            events = [e async for e in client.route_stream("What is 17 * 23?")]
        async with front_door(upstream_config(base_url, "any")) as (_, sdk):
            with pytest.raises(openai.RateLimitError) as http_info:
                await sdk.chat.completions.create(model="up-0", messages=MATH)
    caught = grpc_info.value
    assert caught.code is grpc.StatusCode.RESOURCE_EXHAUSTED, caught
    assert caught.reason == "UPSTREAM_THROTTLED"
    assert caught.retry_after_s is not None and 0 < caught.retry_after_s <= MAX_COOLDOWN_S
    (error,) = [e.error for e in events if e.HasField("error")]
    assert (error.code, error.reason) == ("RESOURCE_EXHAUSTED", "UPSTREAM_THROTTLED")
    assert 0 < error.retry_delay.ToTimedelta().total_seconds() <= MAX_COOLDOWN_S
    header = http_info.value.response.headers["Retry-After"]
    assert 1 <= int(header) <= MAX_COOLDOWN_S
