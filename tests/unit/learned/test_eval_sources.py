"""``eval`` picks each source's head before pricing, and one unusable source never aborts the rest.

Sources, models and prices the artifact never saw are what held-out data brings; each source is
judged on the rows that have every model of its head, only those models priced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from quorum.server.learned import LearnedRouter
from quorum.server.learned.artifact import save_router
from quorum.server.learned.cli import main
from quorum.server.learned.data import RoutingRow, load_prices, parse_row
from quorum.server.learned.evaluation import evaluate, find_head
from quorum.server.learned.training import FittedHead

from .synthetic import MULTI, STRONG, WEAK, multi_rows, pair_rows, write_jsonl

Trained = tuple[LearnedRouter, dict[str, FittedHead]]


@pytest.fixture
def artifact(trained: Trained, tmp_path: Path) -> Path:
    save_router(trained[0], tmp_path / "art", {})
    return tmp_path / "art"


def _unpriced_source(n: int = 5) -> list[dict[str, Any]]:
    """A pool the artifact never saw, with no price for its models."""
    return [
        {
            "id": f"new-{i}",
            "source": "newsrc",
            "prompt": f"Task {i}: something new",
            "results": {"x": {"score": 1.0}, "y": {"score": 0.0}},
        }
        for i in range(n)
    ]


def _answered_by(rows: list[dict[str, Any]], models: dict[str, str | None]) -> None:
    """Rename (or with None drop) models of every row, in place."""
    for row in rows:
        for old, new in models.items():
            result = row["results"].pop(old)
            if new is not None:
                row["results"][new] = result


def _eval(
    artifact: Path, data: list[Path], capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any], str]:
    code = main(
        ["eval", "--data", *map(str, data), "--router", str(artifact), "--json", "--bootstrap", "0"]
    )
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def test_a_new_unpriced_source_is_skipped_not_fatal(
    artifact: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = write_jsonl(tmp_path / "new.jsonl", _unpriced_source())
    code, out, err = _eval(artifact, [data_dir / "pair.jsonl", new], capsys)
    assert code == 0, err
    assert set(out) == {"synth-pair"} and out["synth-pair"]["n"] == 160
    assert "source 'newsrc': no head of the router fits" in err and "skipped" in err


def test_a_known_source_answered_by_other_models_is_skipped_saying_why(
    artifact: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = pair_rows(40)
    _answered_by(rows, {STRONG: "gpt-4o"})  # the head's strong model never answered
    other = write_jsonl(tmp_path / "other.jsonl", rows)
    code, out, err = _eval(artifact, [other, data_dir / "multi.jsonl"], capsys)
    assert code == 0, err
    assert set(out) == {"synth-multi"}
    assert "source 'synth-pair': no row has a result for every model of head 'synth-pair'" in err
    # alone, nothing is left to evaluate: exit 2 after the note, no traceback
    code, out, err = _eval(artifact, [other], capsys)
    assert code == 2 and out == {}
    assert "no row has a result for every model" in err
    assert "no source of the data matches a head" in err


def test_an_extra_unpriced_model_the_head_does_not_use_plays_no_part(
    artifact: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = pair_rows(160)
    for row in rows:
        row["results"]["acme/new-model"] = {"score": 0.5}  # no cost_usd and no price
    extra = write_jsonl(tmp_path / "pair.jsonl", rows)
    (tmp_path / "prices.json").write_bytes((data_dir / "prices.json").read_bytes())
    code, out, err = _eval(artifact, [extra], capsys)
    assert code == 0, err
    assert "left out" not in err
    plain, baseline, _ = _eval(artifact, [data_dir / "pair.jsonl"], capsys)
    assert plain == 0 and out == baseline  # the same figures as without the extra model


def test_the_complete_rows_are_evaluated_when_others_lack_a_head_model(
    artifact: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = pair_rows(100)
    odd = pair_rows(50, seed=5)
    for row in odd:
        row["id"] = "odd-" + row["id"]
    _answered_by(odd[:30], {STRONG: "gpt-4o"})
    _answered_by(odd[30:], {STRONG: None})
    mixed = write_jsonl(tmp_path / "mixed.jsonl", good + odd)
    (tmp_path / "prices.json").write_bytes((data_dir / "prices.json").read_bytes())
    code, out, err = _eval(artifact, [mixed], capsys)
    assert code == 0, err
    assert out["synth-pair"]["n"] == 100
    assert "50 of 150 rows lack a result for a model of head 'synth-pair'; left out" in err


def test_a_source_that_cannot_be_priced_does_not_abort_the_others(
    artifact: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = pair_rows(20)
    for row in rows:
        row["source"] = "renamed-pair"  # matched by its models
    renamed = write_jsonl(tmp_path / "renamed.jsonl", rows)
    # the router's own prices do not cover the pair's models, and no prices.json is beside it
    bare = LearnedRouter.load(artifact)
    assert not bare.manifest.get("prices")
    code, out, err = _eval(artifact, [renamed, data_dir / "multi.jsonl"], capsys)
    assert code == 0, err
    assert set(out) == {"synth-multi"}  # multi rows carry cost_usd
    assert "source 'renamed-pair' (head 'synth-pair'): model" in err and "prices.json" in err


def test_heads_are_matched_by_name_else_by_their_models(trained: Trained) -> None:
    router, _ = trained
    assert find_head(router, "synth-pair", []) is router.heads["synth-pair"]  # by name alone
    pair = pair_rows(10)
    multi = multi_rows(10)
    for row in pair + multi:
        row["source"] = "elsewhere"
    assert find_head(router, "elsewhere", _rows(pair)) is router.heads["synth-pair"]  # exactly
    for row in pair:
        row["results"]["extra"] = {"score": 1.0}
    assert find_head(router, "elsewhere", _rows(pair)) is router.heads["synth-pair"]  # all appear
    _answered_by(multi, {MULTI[0]: "unknown"})
    assert find_head(router, "elsewhere", _rows(multi)) is None  # a head model never answers
    # among heads whose models all answer, the one with the most such rows
    both = pair_rows(10) + multi_rows(4)
    for row in both:
        row["source"] = "elsewhere"
    assert find_head(router, "elsewhere", _rows(both)) is router.heads["synth-pair"]


def _rows(raw: list[dict[str, Any]]) -> list[RoutingRow]:
    return [parse_row(json.dumps(r), f"row {i}") for i, r in enumerate(raw)]


def test_evaluate_prices_only_the_head_models(trained: Trained, data_dir: Path) -> None:
    router, _ = trained
    rows = pair_rows(30)
    for row in rows:
        row["results"]["unpriced"] = {"score": 0.0}
    reports = evaluate(router, _rows(rows), load_prices(data_dir / "prices.json"), rounds=0)
    assert reports["synth-pair"].models == (WEAK, STRONG)
    assert reports["synth-pair"].figures["n"] == 30
