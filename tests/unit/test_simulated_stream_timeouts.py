"""The simulated provider keeps the same stream time limits as the HTTP adapters:
``timeout_s`` bounds each silence, ``stream_total_s`` the whole stream."""

from __future__ import annotations

import asyncio
import random

import pytest

from quorum.server.config import SimulatedBehaviour
from quorum.server.domain import GenerationParams, Message, Role
from quorum.server.errors import ProviderTimeout
from quorum.server.providers.base import ProviderRequest, StreamDelta
from quorum.server.providers.simulated import SimulatedProvider


def _provider(ms_per_token: float) -> SimulatedProvider:
    behaviour = SimulatedBehaviour(
        latency_ms_p50=0, latency_ms_p95=0, ms_per_output_token=ms_per_token, output_tokens=30
    )
    return SimulatedProvider("sim", {"m": behaviour}, rng=random.Random(7))


def _request(timeout_s: float, stream_total_s: float | None = None) -> ProviderRequest:
    messages = (Message(Role.USER, "Explain how a circuit breaker protects a service"),)
    return ProviderRequest("m", messages, GenerationParams(), timeout_s, stream_total_s)


async def _drain(provider: SimulatedProvider, request: ProviderRequest) -> list[StreamDelta]:
    return [delta async for delta in provider.stream(request)]


async def test_a_steady_stream_may_last_longer_than_timeout_s() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    deltas = await _drain(_provider(ms_per_token=10), _request(timeout_s=0.1))
    assert deltas[-1].finish_reason == "stop"
    assert loop.time() - start > 0.15


async def test_a_silence_longer_than_timeout_s_is_a_provider_timeout() -> None:
    with pytest.raises(ProviderTimeout):
        await _drain(_provider(ms_per_token=300), _request(timeout_s=0.1))


async def test_stream_total_s_bounds_the_whole_stream() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ProviderTimeout):
        await _drain(_provider(ms_per_token=10), _request(timeout_s=0.1, stream_total_s=0.1))
    assert loop.time() - start < 0.3
