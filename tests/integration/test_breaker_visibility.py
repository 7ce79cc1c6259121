"""Breaker states as a running server shows them: in Plan, per model, and on /metrics.

* A model with a breaker of its own (``deployments``, or breaker scope ``model``) is
  judged by that breaker: when it opens, Plan shows the model open and moves it last,
  though its provider (whose other models are fine) stays closed.
* ``quorum_breaker_state`` is read when Prometheus scrapes: once the reset timeout has
  passed it says half-open (1), even if nothing has called or planned since.
"""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from quorum.client import AsyncQuorumClient
from quorum.route.v1 import types_pb2 as pb
from quorum.server.app import create_server
from quorum.server.config import parse_config
from tests.conftest import running_server, sim_config, with_model

RESET_S = 0.4


def _breaker_gauge(port: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        s.labels["provider"]: float(s.value)
        for family in text_string_to_metric_families(text)
        if family.name == "quorum_breaker_state"
        for s in family.samples
    }


def _failing_flash(**breaker: object) -> dict[str, object]:
    """The embedded test config with ``flash`` (cheapest, on ``sim``) always failing."""
    data = with_model(sim_config(), "flash", simulated={"failure_rate": 1.0})
    data["providers"]["sim"]["breaker"] = {"fail_max": 1, **breaker}
    return data


async def test_plan_judges_a_model_by_its_own_breaker() -> None:
    config = parse_config(_failing_flash(reset_timeout_s=60, scope="model"))
    async with running_server(config) as (_, client):
        answered = await client.route("hello")  # flash fails, its breaker opens
        assert answered.model == "flash-b"
        plan = await client.plan("hello")
        listed = {m.name: m.breaker_state for m in (await client.list_models()).models}
    # ListModels, too, shows each model's own breaker, not its provider's.
    assert listed["flash"] == pb.BREAKER_STATE_OPEN
    assert listed["mid"] == pb.BREAKER_STATE_CLOSED
    providers = {p.provider: p.breaker_state for p in plan.providers}
    # The provider serves mid too, whose breaker is closed: it stays closed.
    assert providers["sim"] == pb.BREAKER_STATE_CLOSED
    assert providers["sim/flash"] == pb.BREAKER_STATE_OPEN
    candidates = [c for s in plan.plan.stages for c in s.candidates]
    assert candidates[0].model == "flash-b"
    assert "flash" not in [c.model for c in candidates]  # last, past the failover limit
    assert any(
        r.code == "UNHEALTHY_LAST" and "flash (open)" in r.message for r in plan.plan.reasons
    )


async def test_breaker_gauge_turns_half_open_at_the_reset_timeout_without_traffic() -> None:
    config = parse_config(_failing_flash(reset_timeout_s=RESET_S))
    running = create_server(config, "127.0.0.1:0", metrics_address="127.0.0.1:0")
    assert running.metrics is not None
    await running.start()
    try:
        async with AsyncQuorumClient(f"127.0.0.1:{running.port}", timeout=10) as client:
            await client.route("hello")  # flash fails, sim's breaker opens
        port = running.metrics.port
        gauge = await asyncio.to_thread(_breaker_gauge, port)
        assert (gauge["sim"], gauge["sim-b"]) == (2, 0)
        await asyncio.sleep(RESET_S + 0.1)
        # No request, no Plan since: the scrape itself sees the probe is due.
        gauge = await asyncio.to_thread(_breaker_gauge, port)
        assert (gauge["sim"], gauge["sim-b"]) == (1, 0)
    finally:
        await running.drain(0.5)
