"""What a call costs: input read from or written to a prompt cache at its own price."""

from __future__ import annotations

from typing import Any

import pytest

from quorum.server.catalog import build_catalog
from quorum.server.config import parse_config
from quorum.server.domain import Usage


def _spec(kind: str, **prices: Any) -> Any:
    config = parse_config(
        {
            "providers": {"p": {"kind": kind, "base_url": "http://x"}},
            "tiers": ["t"],
            "models": {
                "m": {
                    "provider": "p",
                    "tier": "t",
                    "input_usd_per_mtok": 2.0,
                    "output_usd_per_mtok": 8.0,
                    **prices,
                }
            },
        }
    )
    return build_catalog(config).models["m"]


def test_without_a_cache_every_input_token_is_at_the_input_price() -> None:
    spec = _spec("openai")
    assert spec.cost(Usage(1_000_000, 1_000_000)) == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("kind", "read_share", "write_share"),
    [("openai", 0.5, 1.0), ("anthropic", 0.1, 1.25), ("gemini", 0.25, 1.0)],
)
def test_each_vendors_usual_cache_prices_by_default(
    kind: str, read_share: float, write_share: float
) -> None:
    spec = _spec(kind)
    # 1M input tokens: 500k read from the cache, 250k written to it, 250k fresh.
    usage = Usage(1_000_000, 0, cached_input_tokens=500_000, cache_write_tokens=250_000)
    expected = 2.0 * (0.25 + 0.5 * read_share + 0.25 * write_share)
    assert spec.cost(usage) == pytest.approx(expected)


def test_configured_cache_prices_win() -> None:
    spec = _spec("openai", cached_input_usd_per_mtok=0.2, cache_write_usd_per_mtok=3.0)
    usage = Usage(1_000_000, 0, cached_input_tokens=500_000, cache_write_tokens=500_000)
    assert spec.cost(usage) == pytest.approx(0.1 + 1.5)


def test_usage_adds_up_with_its_cache_counts() -> None:
    total = Usage(10, 2, 4, 1) + Usage(5, 1, 2, 0)
    assert total == Usage(15, 3, 6, 1)
