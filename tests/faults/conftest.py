"""Fixtures of the fault-injection suite: fake vendor servers in this event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes import anthropic_server, gemini_server, openai_server
from tests.fakes.common import Running


@pytest.fixture
async def oa() -> AsyncIterator[Running]:
    """A fake OpenAI-compatible API."""
    async with openai_server.serve() as running:
        yield running


@pytest.fixture
async def oa2() -> AsyncIterator[Running]:
    """A second, independent fake OpenAI-compatible API (another deployment or region)."""
    async with openai_server.serve() as running:
        yield running


@pytest.fixture
async def an() -> AsyncIterator[Running]:
    """A fake Anthropic Messages API."""
    async with anthropic_server.serve() as running:
        yield running


@pytest.fixture
async def gm() -> AsyncIterator[Running]:
    """A fake Gemini API."""
    async with gemini_server.serve() as running:
        yield running
