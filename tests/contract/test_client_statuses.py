"""408 and 409, as every adapter maps them (unary and streaming): a 408 is retried and
fails over but is no breaker verdict; a 409 is the request refused, like any 4xx."""

from __future__ import annotations

import pytest

from quorum.server.errors import ProviderError, ProviderRejected, ProviderRequestTimeout
from quorum.server.providers.base import Provider
from tests.contract.conftest import ask
from tests.contract.test_provider_contract import run

STATUSES: dict[int, type[ProviderError]] = {408: ProviderRequestTimeout, 409: ProviderRejected}


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize("status", sorted(STATUSES))
async def test_408_and_409_do_not_count_against_the_breaker(
    provider: Provider, status: int, mode: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        await run(provider, ask(f"error-{status}"), mode)
    assert type(caught.value) is STATUSES[status]
    assert caught.value.status == status
    assert not caught.value.counts_for_breaker
    assert f"HTTP {status}: " in caught.value.message
