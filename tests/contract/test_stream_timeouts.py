"""What a provider's time limit means for a stream, held to every adapter.

``ProviderRequest.timeout_s`` (and the provider's configured ``timeout_s``) bounds each
silence of a stream — the wait for its first chunk and for every next one — not its
length: a stream that keeps answering may last many times ``timeout_s``. One that goes
silent for longer is a :class:`ProviderTimeout`. ``stream_total_s`` bounds the whole
stream (the executor passes the caller's time left). A unary answer still comes whole
within ``timeout_s`` (``test_provider_contract.test_slow_beyond_timeout``).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from pydantic import SecretStr

from quorum.server.config import ProviderConfig
from quorum.server.errors import ProviderTimeout
from quorum.server.providers.base import Provider, ProviderRequest, StreamDelta
from quorum.server.providers.http import HttpClient
from tests.contract.conftest import Control, VendorCase, ask
from tests.fakes.common import OK_TEXT, Running

# A chunk every 80 ms, against a limit of 0.3 s: the whole stream takes 0.6-1.1 s (8 to
# 14 gaps, by vendor), far past the limit, while no gap comes near it.
DRIP = "drip-80"
LIMIT_S = 0.3


async def _drain(provider: Provider, request: ProviderRequest, into: list[StreamDelta]) -> None:
    async for delta in provider.stream(request):
        into.append(delta)


async def _timed(provider: Provider, model: str) -> tuple[list[StreamDelta], float]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    request = ask(model, timeout_s=LIMIT_S)
    deltas = [delta async for delta in provider.stream(request)]
    return deltas, loop.time() - start


async def test_a_steady_stream_may_last_longer_than_timeout_s(provider: Provider) -> None:
    deltas, took = await _timed(provider, DRIP)
    assert "".join(d.text for d in deltas) == OK_TEXT
    assert deltas[-1].finish_reason == "stop"
    assert took > 1.5 * LIMIT_S  # the test means something: the stream outlasted the limit


async def test_the_configured_timeout_s_bounds_silences_not_the_stream(
    case: VendorCase, fake: Running, http: HttpClient
) -> None:
    # The adapter's own timeout_s (the repro's cause: 1 s, with a caller allowing 20 s).
    config = ProviderConfig(
        kind=case.kind, base_url=fake.base_url, timeout_s=LIMIT_S, connect_timeout_s=2
    )
    short = case.adapter(f"fake-{case.kind}", config, SecretStr("test-key"), http)
    request = ask(DRIP, timeout_s=20.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    deltas = [delta async for delta in short.stream(request)]
    assert "".join(d.text for d in deltas) == OK_TEXT
    assert loop.time() - start > 1.5 * LIMIT_S
    with pytest.raises(ProviderTimeout):
        await _drain(short, ask("drip-3000", timeout_s=20.0), [])


async def test_a_stream_silent_for_longer_than_timeout_s_is_a_provider_timeout(
    provider: Provider, control: Control
) -> None:
    # The first frame comes at once, the next one after 3 s: the silence is what times out.
    received: list[StreamDelta] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ProviderTimeout):
        await _drain(provider, ask("drip-3000", timeout_s=LIMIT_S), received)
    assert loop.time() - start < 2.0  # within about the limit, not when the next frame came
    assert not any(d.finish_reason for d in received)
    stats = await control.wait_for("client_disconnects", 1)
    assert stats["client_disconnects"] == 1  # the upstream saw the stream abandoned


async def test_a_stream_that_does_not_start_within_timeout_s_is_a_provider_timeout(
    provider: Provider,
) -> None:
    with pytest.raises(ProviderTimeout):
        await _timed(provider, "slow-3000")


async def test_stream_total_s_bounds_the_whole_stream(provider: Provider) -> None:
    received: list[StreamDelta] = []
    request = replace(ask(DRIP, timeout_s=5.0), stream_total_s=LIMIT_S)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ProviderTimeout):
        await _drain(provider, request, received)
    assert loop.time() - start < 2 * LIMIT_S + 0.3
    assert not any(d.finish_reason for d in received)
