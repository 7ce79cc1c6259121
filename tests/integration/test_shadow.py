"""Shadow evaluation on live traffic, and the report built from it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from quorum.server.config import parse_config
from quorum.server.shadow import sampled
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
