"""``quorum_breaker_state`` is the breaker's state when Prometheus scrapes, and the
open → half-open change is reported once, when first seen.

pybreaker moves an open breaker to half-open only when the probe call starts; the
breakers (and Plan) count it half-open as soon as the reset timeout has passed. The
gauge must agree with them without a call having to happen, or the "breaker open for
5m" alert fires for a provider nobody calls.
"""

from __future__ import annotations

import asyncio
import contextlib

from structlog.testing import capture_logs

from quorum.server.config import BreakerConfig
from quorum.server.domain import BreakerState
from quorum.server.errors import ProviderUnavailable
from quorum.server.observability.metrics import Metrics, sample_value
from quorum.server.resilience.breakers import Breakers

RESET_S = 0.05
Change = tuple[str, BreakerState, BreakerState]
_OPENED = (BreakerState.CLOSED, BreakerState.OPEN)


def _gauge(metrics: Metrics, key: str) -> float:
    return sample_value(metrics, "quorum_breaker_state", {"provider": key})


def _fail(breakers: Breakers, key: str) -> None:
    with contextlib.suppress(ProviderUnavailable):
        with breakers.guard(key):
            raise ProviderUnavailable(f"{key}: HTTP 503", provider=key, status=503)


def _succeed(breakers: Breakers, key: str) -> None:
    with breakers.guard(key):
        pass


def _tracked(breakers: Breakers) -> tuple[Metrics, list[Change]]:
    metrics = Metrics()
    metrics.track_breakers(breakers.states)
    changes: list[Change] = []
    breakers.add_listener(lambda key, old, new: changes.append((key, old, new)))
    return metrics, changes


async def test_gauge_shows_half_open_once_the_reset_timeout_passed_without_a_call() -> None:
    b = Breakers(
        {
            "p": BreakerConfig(fail_max=1, reset_timeout_s=RESET_S),
            "q": BreakerConfig(fail_max=1, reset_timeout_s=60),
        }
    )
    metrics, changes = _tracked(b)
    assert _gauge(metrics, "p") == 0
    _fail(b, "p")
    _fail(b, "q")
    assert (_gauge(metrics, "p"), _gauge(metrics, "q")) == (2, 2)
    await asyncio.sleep(RESET_S + 0.02)
    # Nothing read the breakers since: the scrape alone sees p half-open.
    assert (_gauge(metrics, "p"), _gauge(metrics, "q")) == (1, 2)
    # Scraping reports nothing (it runs on another thread in a server).
    assert changes == [("p", *_OPENED), ("q", *_OPENED)]
    _succeed(b, "p")  # the probe answers
    assert _gauge(metrics, "p") == 0


async def test_half_open_is_reported_once_when_first_seen_then_the_probe_decides() -> None:
    b = Breakers({"p": BreakerConfig(fail_max=1, reset_timeout_s=RESET_S)})
    _, changes = _tracked(b)
    _fail(b, "p")
    await asyncio.sleep(RESET_S + 0.02)
    with capture_logs() as logs:
        assert b.health("p").state is BreakerState.HALF_OPEN  # a Plan, a request
        assert b.snapshot()["p"].state is BreakerState.HALF_OPEN
        _fail(b, "p")  # the probe fails: open again
        await asyncio.sleep(RESET_S + 0.02)
        assert b.health("p").state is BreakerState.HALF_OPEN
        _succeed(b, "p")  # this probe answers: closed
    half, opened, closed = (
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    )
    assert changes == [("p", *_OPENED), ("p", *half), ("p", *opened), ("p", *half), ("p", *closed)]
    logged = [(e["old"], e["new"]) for e in logs if e["event"] == "breaker_state_changed"]
    assert logged == [
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


async def test_a_probe_that_goes_first_is_reported_as_pybreaker_sees_it() -> None:
    # The guard reads the health before the probe, so the change is reported there,
    # and pybreaker's own open → half-open when the probe starts is not repeated.
    b = Breakers({"p": BreakerConfig(fail_max=1, reset_timeout_s=RESET_S)})
    _, changes = _tracked(b)
    _fail(b, "p")
    await asyncio.sleep(RESET_S + 0.02)
    _succeed(b, "p")
    assert [(old, new) for _, old, new in changes] == [
        _OPENED,
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


def test_gauge_covers_deployment_breakers_and_model_scoped_providers() -> None:
    b = Breakers(
        {
            "east": BreakerConfig(fail_max=1, reset_timeout_s=60),
            "west": BreakerConfig(fail_max=1, reset_timeout_s=60, scope="model"),
        },
        deployments={"east/llama": "east", "west/llama": "west", "west/mistral": "west"},
    )
    metrics, _ = _tracked(b)
    _fail(b, "east/llama")
    _fail(b, "west/llama")
    values = {k: _gauge(metrics, k) for k in ("east", "east/llama", "west", "west/llama")}
    # A model-scoped provider shows its healthiest model's breaker, as Plan lists it.
    assert values == {"east": 0, "east/llama": 2, "west": 0, "west/llama": 2}
    _fail(b, "west/mistral")
    assert _gauge(metrics, "west") == 2
    assert b.states() == {k: h.state for k, h in b.snapshot().items()}
