"""Shadow evaluation on live traffic, and the report built from it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from quorum.route.v1 import types_pb2 as pb
from quorum.server.catalog import build_catalog
from quorum.server.config import parse_config
from quorum.server.domain import (
    Candidate,
    Completion,
    Hints,
    Message,
    Role,
    RouteRequest,
    Sensitivity,
)
from quorum.server.execute.gate import GatePolicy
from quorum.server.report import main as report_main
from quorum.server.router import Router
from quorum.server.shadow import ShadowEvaluator, ShadowSettings, sampled, shadow_model
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
    answered = [r for r in shadows if r["outcome"] == "answered"]
    assert answered and all(isinstance(r["agree"], bool) for r in answered)
    report = subprocess.run(
        [str(QUORUM), "router", "report", "--log", str(log_path), "--json", "--min-samples", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)
    assert rows
    assert {"task", "tiers", "n", "failed", "agreement", "saving", "verdict"} <= set(rows[0])
    assert sum(r["n"] + r["failed"] for r in rows) == len(shadows)


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


def _shadow_line(i: int, primary_tier: str, agree: bool | None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "shadow",
        "ts": 1.0,
        "request_id": f"r{i}",
        "task": "code",
        "agent": "",
        "primary_model": {"premium": "frontier", "mid": "mid"}[primary_tier],
        "primary_tier": primary_tier,
        "primary_cost_usd": 0.01,
        "shadow_model": "flash",
        "shadow_tier": "cheap",
        "shadow_cost_usd": 0.0005,
        "agree": agree,
        "reason": "text equal" if agree else "text differ",
        **extra,
    }


def _report(
    tmp_path: Path, lines: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], *args: str
) -> list[dict[str, Any]]:
    log = tmp_path / "decisions.jsonl"
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    capsys.readouterr()
    assert report_main(["--log", str(log), "--json", *args]) == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return rows


def test_report_judges_each_tier_move_on_its_own_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # premium -> cheap agreed on 0 of 40, mid -> cheap on 300 of 300; the last line is
    # premium -> cheap. Merged, they would read "96%, move premium -> cheap".
    lines = [_shadow_line(i, "premium", False) for i in range(39)]
    lines += [_shadow_line(100 + i, "mid", True) for i in range(300)]
    lines.append(_shadow_line(999, "premium", False))
    rows = {r["tiers"]: r for r in _report(tmp_path, lines, capsys)}
    assert set(rows) == {"premium → cheap", "mid → cheap"}
    premium, mid = rows["premium → cheap"], rows["mid → cheap"]
    assert (premium["n"], premium["agreement"], premium["verdict"]) == (40, 0.0, "keep")
    assert (mid["n"], mid["agreement"], mid["verdict"]) == (300, 1.0, "move mid → cheap")
    assert premium["task"] == mid["task"] == "code"
    assert (premium["primary_tier"], premium["shadow_tier"]) == ("premium", "cheap")


def test_failed_shadow_calls_are_counted_apart_from_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 60 answered calls all agreed; 25 failed (new lines) and 15 failed (lines written before
    # "outcome" existed: agree false, reason "shadow call failed"). Failures are no verdicts.
    lines = [_shadow_line(i, "mid", True, outcome="answered") for i in range(60)]
    lines += [
        _shadow_line(
            100 + i, "mid", None, outcome="failed", reason="shadow call failed: TimeoutError"
        )
        for i in range(25)
    ]
    lines += [_shadow_line(200 + i, "mid", False, reason="shadow call failed") for i in range(15)]
    # A task whose shadow calls all failed has no agreement to report.
    lines += [
        dict(_shadow_line(300 + i, "premium", None, outcome="failed"), task="chat")
        for i in range(40)
    ]
    rows = {r["task"]: r for r in _report(tmp_path, lines, capsys)}
    code, chat = rows["code"], rows["chat"]
    assert (code["n"], code["failed"], code["agreement"]) == (60, 40, 1.0)
    assert code["verdict"] == "move mid → cheap"
    assert code["saving"] == 0.95  # from the answered calls only
    assert (chat["n"], chat["failed"], chat["agreement"], chat["saving"]) == (0, 40, None, None)
    assert chat["verdict"] == "need 30 more samples"
    # The text report shows the failures as a column.
    log = tmp_path / "decisions.jsonl"
    assert report_main(["--log", str(log)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].split()[:4] == ["task", "tiers", "n", "failed"]
    assert "mid → cheap" in text[1] and " 60 " in text[1] and " 40 " in text[1]


@pytest.mark.parametrize(
    ("args", "option"), [(["--target", "1.5"], "--target"), (["--min-samples", "0"], "--min")]
)
def test_report_rejects_bad_arguments(
    args: list[str], option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "decisions.jsonl"
    log.write_text("")
    assert report_main(["--log", str(log), *args]) == 2
    assert f"argument {option}" in capsys.readouterr().err


def _mid_request(i: int) -> RouteRequest:
    return RouteRequest(
        f"f-{i}", (Message(Role.USER, "What is the capital of France?"),), hints=Hints(tier="mid")
    )


async def test_a_shadow_call_without_an_answer_is_logged_as_failed(tmp_path: Path) -> None:
    # Every cheap model is down: the shadow calls end without an answer, or raise. Neither is
    # a verdict on the cheap tier's quality, so neither may be logged as agree=false.
    log_path = tmp_path / "decisions.jsonl"
    data = sim_config(
        shadow={"sample_rate": 1.0, "daily_budget_usd": 10.0},
        decisions={"sink": "file", "path": str(log_path), "flush_interval_s": 0},
    )
    for model in ("flash", "flash-b"):
        data = with_model(data, model, simulated={"failure_rate": 1.0})
    router = Router(parse_config(data))
    try:
        for i in range(3):
            await router.route(_mid_request(i))
        await router.shadow.close()

        async def raising(
            request: RouteRequest, candidate: Candidate, timeout_s: float
        ) -> tuple[Completion | None, float]:
            raise RuntimeError("connection reset")

        router.shadow._call = raising
        await router.route(_mid_request(3))
        await router.shadow.close()
    finally:
        await router.close()
    shadows = [
        json.loads(line)
        for line in log_path.read_text().splitlines()
        if json.loads(line)["type"] == "shadow"
    ]
    assert len(shadows) == 4
    for line in shadows:
        assert line["outcome"] == "failed" and line["agree"] is None
        assert line["reason"].startswith("shadow call failed")
        assert (line["primary_tier"], line["shadow_tier"]) == ("mid", "cheap")
    assert shadows[-1]["reason"] == "shadow call failed: RuntimeError"


async def test_a_shadow_answer_the_gate_would_not_serve_is_no_agreement() -> None:
    # The same words with a mean log-probability far under the gate's floor: a cascade
    # would not have served it, so the cheaper tier would not have done.
    decisions = _Notes()
    catalog = build_catalog(parse_config(sim_config()))
    router = Router(parse_config(sim_config()))
    try:
        primary = await router.route(_mid_request(0))
    finally:
        await router.close()

    async def unsure(
        request: RouteRequest, candidate: Candidate, timeout_s: float
    ) -> tuple[Completion | None, float]:
        return Completion(primary.completion.content, mean_logprob=-5.0), 0.0001

    shadow = ShadowEvaluator(
        ShadowSettings(1.0, 10.0, 5.0),
        catalog,
        unsure,
        decisions,  # type: ignore[arg-type]
        gate=GatePolicy(min_mean_logprob=-0.7),
    )
    shadow.consider(_mid_request(0), primary)
    await shadow.close()
    (line,) = decisions.lines
    assert (line["outcome"], line["agree"]) == ("answered", False)
    assert line["reason"].startswith("gate: logprob")


class _Notes:
    """Collects what the evaluator logs."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def note(self, record: dict[str, Any]) -> None:
        self.lines.append(record)
