"""Shadow evaluation on live traffic, and the report built from it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from quorum.route.v1 import types_pb2 as pb
from quorum.server.catalog import build_catalog
from quorum.server.config import parse_config
from quorum.server.domain import Hints, Message, Role, RouteRequest, Sensitivity
from quorum.server.shadow import sampled, shadow_model
from tests.conftest import running_server, sim_config, with_model

QUORUM = Path(sys.executable).with_name("quorum")


def test_sampling_is_deterministic_and_proportional() -> None:
    ids = [f"req-{i}" for i in range(4000)]
    picked = [i for i in ids if sampled(i, 0.25)]
    assert 0.2 < len(picked) / len(ids) < 0.3
    assert picked == [i for i in ids if sampled(i, 0.25)]
    assert not any(sampled(i, 0.0) for i in ids)


async def test_shadow_verdicts_are_logged_and_reported(tmp_path: Path) -> None:
    log_path = tmp_path / "decisions.jsonl"
    # The cheap model is right on everything: its answers agree with the premium ones.
    data = sim_config(
        decisions={"sink": "file", "path": str(log_path)},
        shadow={"sample_rate": 1.0, "daily_budget_usd": 10.0},
    )
    data = with_model(
        data,
        "mid",
        simulated={"skill": {"low": 0.0, "medium": 0.0, "high": 0.0}, "refusal_share": 0.0},
    )
    async with running_server(parse_config(data)) as (_, client):
        for i in range(6):
            await client.route(f"What is {i} + {i}?", hints=None, request_id=f"s-{i}")
            await client.route(
                f"Explain why {i} matters, in depth and step by step", request_id=f"m-{i}"
            )
        await asyncio.sleep(0.2)
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    shadows = [r for r in records if r["type"] == "shadow"]
    assert shadows, "premium answers should have been shadowed by a cheaper tier"
    assert all(r["shadow_tier"] != r["primary_tier"] for r in shadows)
    report = subprocess.run(
        [str(QUORUM), "router", "report", "--log", str(log_path), "--json", "--min-samples", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)
    assert rows
    assert {"task", "n", "agreement", "saving", "verdict"} <= set(rows[0])
    assert sum(r["n"] for r in rows) == len(shadows)


def test_a_shadow_model_must_be_cleared_for_the_request() -> None:
    # Restricted data is never shadowed to a model not cleared for it.
    data = with_model(sim_config(), "flash", max_sensitivity="public")
    data = with_model(data, "flash-b", max_sensitivity="public")
    catalog = build_catalog(parse_config(data))
    public = RouteRequest("r", (Message(Role.USER, "hi"),))
    restricted = RouteRequest(
        "r",
        (Message(Role.USER, "Patient 4711"),),
        hints=Hints(sensitivity=Sensitivity.RESTRICTED),
    )
    model = shadow_model(catalog, public, "frontier")
    assert model is not None and model.name == "flash"
    cleared = shadow_model(catalog, restricted, "frontier")
    assert cleared is None or cleared.max_sensitivity >= Sensitivity.RESTRICTED


async def test_concurrent_shadow_calls_stay_within_the_shadow_budget() -> None:
    # Each call's estimated cost is counted when it is scheduled, not when it ends: a
    # budget smaller than one call's estimate allows none, however many arrive at once.
    data = sim_config(shadow={"sample_rate": 1.0, "daily_budget_usd": 1e-9})
    quality = pb.RoutingHints(priority=pb.PRIORITY_QUALITY)  # premium answers: shadowed
    async with running_server(parse_config(data)) as (running, client):
        answers = await asyncio.gather(
            *(client.route("Hello there", hints=quality, request_id=f"b-{i}") for i in range(20))
        )
        await asyncio.sleep(0.3)  # any shadow call made has ended by now
        spent = running.router.shadow._spent
    assert all(a.model == "frontier" for a in answers)
    assert spent == 0.0
