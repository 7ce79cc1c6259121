"""A vendor that repeats the key it was sent in an error never gets it into Quorum's errors.

OpenAI's API answers a wrong key with "Incorrect API key provided: sk-ab…wxyz" (masked);
some OpenAI-compatible servers and proxies echo the key or the whole Authorization header.
That text becomes the error's message, which reaches the caller's status, each attempt's
reason in the failure details and the logs. The fakes' ``leak-key`` behaviours repeat the
key every way: in a 401 body, and in an error event in the middle of a stream.
"""

from __future__ import annotations

import pytest

from quorum.server.errors import ProviderAuthError, ProviderError
from quorum.server.providers.base import Provider, StreamDelta
from quorum.server.providers.http import REDACTED, HttpClient
from tests.contract.conftest import VendorCase, ask, make_provider
from tests.fakes.common import Running

KEY = "sk-proj-Zq8xW3vN7pR2tY6uK1mB4cL9dF0gH5jT"


def _shows_no_key(error: ProviderError) -> None:
    text = f"{error} {error.message} {error.args}"
    assert REDACTED in text, text
    for shown in (KEY, KEY[:12], KEY[8:20], KEY[-8:], KEY[:8] + "*" * 4, "*" * 4 + KEY[-4:]):
        assert shown not in text, (shown, text)


@pytest.fixture
def leaky(case: VendorCase, fake: Running, http: HttpClient) -> Provider:
    return make_provider(case, fake, http, KEY)


async def test_a_key_repeated_in_an_error_body_is_redacted(leaky: Provider) -> None:
    with pytest.raises(ProviderAuthError) as info:
        await leaky.complete(ask("leak-key"))
    _shows_no_key(info.value)


async def test_a_key_repeated_in_a_stream_refused_with_an_error_body_is_redacted(
    leaky: Provider,
) -> None:
    with pytest.raises(ProviderAuthError) as info:
        async for _ in leaky.stream(ask("leak-key")):
            pass
    _shows_no_key(info.value)


async def test_a_key_repeated_in_an_error_event_mid_stream_is_redacted(leaky: Provider) -> None:
    received: list[StreamDelta] = []
    with pytest.raises(ProviderError) as info:
        await _drain(leaky, received)
    assert received  # the stream had started: the error came as an event
    _shows_no_key(info.value)


async def _drain(provider: Provider, into: list[StreamDelta]) -> None:
    async for delta in provider.stream(ask("leak-key-mid-stream")):
        into.append(delta)


async def test_other_error_text_is_kept(leaky: Provider) -> None:
    with pytest.raises(ProviderError) as info:
        await leaky.complete(ask("error-404"))
    assert REDACTED not in str(info.value) and "HTTP 404" in str(info.value)
