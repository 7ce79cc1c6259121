"""No provider call follows a redirect: a 3xx is refused with the status and the host it
points to, and nothing (no credentials, no prompt) reaches that host.

Every adapter (chat unary and streamed) and the remote embeddings encoder, against an
upstream that answers each request with a redirect to a second upstream that records
what reaches it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from quorum.server.classify.embedding import EmbeddingUnavailable
from quorum.server.config import ProviderConfig
from quorum.server.config.routing import RemoteEmbeddingConfig
from quorum.server.domain import Completion
from quorum.server.errors import ProviderRedirected
from quorum.server.providers.base import Provider, ProviderRequest
from quorum.server.providers.embeddings_http import RemoteEncoder
from quorum.server.providers.http import HttpClient, redirect_host
from tests.contract.conftest import CASES, ask
from tests.fakes import scripted
from tests.fakes.scripted import Canned, Scripted

KEY = "sk-REDIRECT-SECRET-0123456789"
CUSTOM = "custom-header-secret-9876543210"
QUERY_SECRET = "QUERYSECRET"
REDIRECTS = (301, 302, 303, 307, 308)


async def run(provider: Provider, request: ProviderRequest, mode: str) -> Completion | None:
    if mode == "complete":
        return await provider.complete(request)
    _ = [delta async for delta in provider.stream(request)]
    return None


@pytest.fixture
async def elsewhere() -> AsyncIterator[Scripted]:
    """The host a redirect points to: it answers a valid-looking 200 to anything, and
    records every request (it must see none)."""
    answer = {"choices": [{"message": {"content": "leaked"}, "finish_reason": "stop"}]}
    async with scripted.serve(Canned.json(answer)) as upstream:
        yield upstream


@pytest.fixture
async def moved() -> AsyncIterator[Scripted]:
    """The provider's base_url: every request is redirected (the test sets the status)."""
    async with scripted.serve() as upstream:
        yield upstream


def _redirect_to(moved: Scripted, elsewhere: Scripted, status: int) -> str:
    """Redirect every request ``moved`` gets; the host that the error should name."""
    location = f"{elsewhere.root}/v1/chat/completions?key={QUERY_SECRET}"
    moved.default = Canned.redirect(status, location)
    return elsewhere.root.removeprefix("http://")


def _adapter(kind: str, base_url: str, http: HttpClient) -> Provider:
    config = ProviderConfig(
        kind=kind,  # type: ignore[arg-type]
        base_url=base_url,
        headers={"x-custom-token": CUSTOM},
        timeout_s=5,
        connect_timeout_s=2,
    )
    return CASES[kind].adapter(f"moved-{kind}", config, SecretStr(KEY), http)


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize("status", REDIRECTS)
@pytest.mark.parametrize("kind", sorted(CASES))
async def test_a_redirect_is_refused_and_never_followed(
    moved: Scripted, elsewhere: Scripted, http: HttpClient, kind: str, status: int, mode: str
) -> None:
    host = _redirect_to(moved, elsewhere, status)
    provider = _adapter(kind, moved.root, http)
    with pytest.raises(ProviderRedirected) as info:
        await run(provider, ask("ok"), mode)
    error = info.value
    assert error.status == status
    assert f"HTTP {status} redirect to {host}, not followed" in error.message
    assert QUERY_SECRET not in error.message and "/v1/chat" not in error.message
    assert elsewhere.seen == []  # no credentials (nor a body-less GET) went there
    assert len(moved.seen) == 1  # one request, not a loop of them
    assert moved.seen[0].method == "POST"


async def test_a_redirect_loop_is_one_request(moved: Scripted, http: HttpClient) -> None:
    moved.default = Canned.redirect(307, f"{moved.root}/v1/messages")
    with pytest.raises(ProviderRedirected, match=r"HTTP 307 redirect to 127\.0\.0\.1"):
        await _adapter("anthropic", moved.root, http).complete(ask("ok"))
    assert len(moved.seen) == 1


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("https://user:pass@evil.example:8443/x?key=secret", "evil.example:8443"),
        ("http://[::1]:9000/v1", "[::1]:9000"),
        ("/v1/elsewhere?token=secret", "another path on the same host"),
        ("http://[broken/", "an unreadable Location"),
        (None, "no Location"),
    ],
)
def test_the_redirect_target_is_named_by_its_host_alone(location: str | None, shown: str) -> None:
    assert redirect_host(location) == shown


def _embeddings(n: int) -> Canned:
    return Canned.json({"data": [{"index": i, "embedding": [1.0, float(i)]} for i in range(n)]})


async def test_the_remote_encoder_never_follows_a_redirect(
    moved: Scripted, elsewhere: Scripted, http: HttpClient
) -> None:
    config = ProviderConfig(kind="openai", base_url=moved.root, timeout_s=5.0)
    remote = RemoteEmbeddingConfig(provider="emb", model="m", timeout_s=2.0)
    encoder = RemoteEncoder("emb", config, remote, SecretStr(KEY), http)
    host = _redirect_to(moved, elsewhere, 307)
    # At start-up: refused at once, not retried (a redirect is no transient failure).
    with pytest.raises(EmbeddingUnavailable, match=re.escape(f"HTTP 307 redirect to {host}")):
        await asyncio.to_thread(encoder.encode, ["a", "b"])
    assert len(moved.seen) == 1
    # Per request (once the examples are embedded): unavailable, and nothing followed.
    moved.script.append(_embeddings(2))
    await asyncio.to_thread(encoder.encode, ["a", "b"])
    with pytest.raises(EmbeddingUnavailable, match=re.escape(f"HTTP 307 redirect to {host}")):
        await encoder.aencode(["c"])
    assert elsewhere.seen == []
    await encoder.close()


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_a_redirect_whose_body_reads_like_a_vendor_error_is_still_a_redirect(
    moved: Scripted, elsewhere: Scripted, http: HttpClient, kind: str
) -> None:
    # A quota or bad-key body on a 3xx is no vendor's verdict: the status says what it is.
    body = {
        "error": {
            "type": "insufficient_quota",
            "message": "Your credit balance is too low",
            "details": [{"reason": "API_KEY_INVALID"}],
        }
    }
    moved.default = Canned(
        307,
        json.dumps(body).encode(),
        {"Location": f"{elsewhere.root}/v1", "Content-Type": "application/json"},
    )
    with pytest.raises(ProviderRedirected):
        await run(_adapter(kind, moved.root, http), ask("ok"), "complete")
    assert elsewhere.seen == []
