"""A provider's configured headers and its credential are one set of headers on the
wire, names compared case-insensitively as HTTP compares them: a configured
``authorization`` and the API key's ``Authorization`` are one header, not two."""

from __future__ import annotations

import contextlib

import pytest
from pydantic import SecretStr

from quorum.server.config import ProviderConfig
from quorum.server.errors import QuorumError
from quorum.server.providers.http import HttpClient
from tests.contract.conftest import CASES, ask
from tests.fakes import scripted
from tests.fakes.scripted import Canned

KEY = "sk-the-one-key-0123456789"
# Each adapter's credential header, written in another case in the config.
CREDENTIAL = {"openai": "authorization", "anthropic": "X-API-KEY", "gemini": "X-Goog-Api-Key"}


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_a_configured_header_and_the_key_are_one_header(kind: str) -> None:
    headers = {CREDENTIAL[kind]: "stale", "X-Team": "routing"}
    if kind == "anthropic":
        headers["ANTHROPIC-VERSION"] = "2023-01-01"  # a configured version replaces the default
    config = ProviderConfig(
        kind=kind,  # type: ignore[arg-type]
        base_url="http://127.0.0.1:9",
        headers=headers,
        timeout_s=5,
        connect_timeout_s=2,
    )
    http = HttpClient()
    try:
        async with scripted.serve(Canned.json({})) as upstream:
            config = config.model_copy(update={"base_url": upstream.root})
            provider = CASES[kind].adapter(kind, config, SecretStr(KEY), http)
            with contextlib.suppress(QuorumError):  # only what went on the wire matters
                await provider.complete(ask("ok"))
            (seen,) = upstream.seen
    finally:
        await http.close()
    (credential,) = seen.all(CREDENTIAL[kind])
    assert KEY in credential  # the key wins over a configured value
    assert seen.all("x-team") == ["routing"]
    if kind == "anthropic":
        assert seen.all("anthropic-version") == ["2023-01-01"]
