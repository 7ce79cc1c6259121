"""Fixtures of the provider contract suite: one fake vendor server and its adapter.

Every test that asks for ``provider`` runs once per vendor. What differs between
vendors is stated here, in :class:`VendorCase`, never in the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from pydantic import SecretStr

from quorum.server.config import ProviderConfig
from quorum.server.domain import GenerationParams, Message, Role
from quorum.server.providers.anthropic import AnthropicProvider
from quorum.server.providers.base import Provider, ProviderRequest
from quorum.server.providers.gemini import GeminiProvider
from quorum.server.providers.http import HttpClient
from quorum.server.providers.openai import OpenAIProvider
from tests.fakes import anthropic_server, gemini_server, openai_server
from tests.fakes.common import Running

Kind = Literal["openai", "anthropic", "gemini"]
Adapter = Callable[[str, ProviderConfig, SecretStr | None, HttpClient], Provider]


@dataclass(frozen=True, slots=True)
class VendorCase:
    """What the contract needs to know about one vendor."""

    kind: Kind
    serve: Callable[..., contextlib.AbstractAsyncContextManager[Running]]
    adapter: Adapter
    logprobs: bool  # the API reports token log-probabilities
    body_retry_after_s: float | None  # a 429 body alone carries a retry delay (Gemini)
    call_signature: str = ""  # opaque data the API attaches to a tool call and wants back


CASES = {
    "openai": VendorCase("openai", openai_server.serve, OpenAIProvider, True, None),
    "anthropic": VendorCase("anthropic", anthropic_server.serve, AnthropicProvider, False, None),
    "gemini": VendorCase(
        "gemini", gemini_server.serve, GeminiProvider, True, 17.0, gemini_server.SIGNATURE
    ),
}


class Control:
    """The fake server's control API, over HTTP as a benchmark would use it."""

    def __init__(self, running: Running, http: HttpClient) -> None:
        self._root = running.root
        self._http = http

    async def stats(self) -> dict[str, Any]:
        async with self._http.session.get(f"{self._root}/_control/stats") as response:
            data: dict[str, Any] = await response.json()
            return data

    async def script(self, *behaviours: str) -> None:
        url = f"{self._root}/_control/script"
        async with self._http.session.post(url, json={"behaviours": list(behaviours)}) as response:
            response.raise_for_status()

    async def reset(self) -> None:
        async with self._http.session.post(f"{self._root}/_control/reset") as response:
            response.raise_for_status()

    async def wait_for(self, key: str, at_least: int, within_s: float = 3.0) -> dict[str, Any]:
        """Poll the stats until ``key`` reaches ``at_least`` (or time runs out)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            stats = await self.stats()
            if stats[key] >= at_least or loop.time() > deadline:
                return stats
            await asyncio.sleep(0.02)


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> VendorCase:
    return CASES[request.param]


@pytest.fixture
async def fake(case: VendorCase) -> AsyncIterator[Running]:
    async with case.serve() as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient()
    yield client
    await client.close()


@pytest.fixture
def control(fake: Running, http: HttpClient) -> Control:
    return Control(fake, http)


def make_provider(case: VendorCase, fake: Running, http: HttpClient, key: str | None) -> Provider:
    config = ProviderConfig(
        kind=case.kind, base_url=fake.base_url, timeout_s=10, connect_timeout_s=2
    )
    return case.adapter(f"fake-{case.kind}", config, SecretStr(key) if key else None, http)


@pytest.fixture
def provider(case: VendorCase, fake: Running, http: HttpClient) -> Provider:
    return make_provider(case, fake, http, "test-key")


def ask(
    model: str,
    *messages: Message | str,
    timeout_s: float = 5.0,
    **params: Any,
) -> ProviderRequest:
    """A request; bare strings are user messages."""
    turns = tuple(m if isinstance(m, Message) else Message(Role.USER, m) for m in messages)
    return ProviderRequest(
        model_id=model,
        messages=turns or (Message(Role.USER, "Hi there"),),
        params=GenerationParams(**params),
        timeout_s=timeout_s,
    )
