"""Degenerate but valid data is judged or refused cleanly: free premium models, pools of one
model, targets the cheap model already meets, an ``--out`` that cannot be written, a UTF-8
byte order mark, and held-out sources matched to the head that can judge their cascade."""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path
from typing import Any

import pytest

from quorum.server.learned import LearnedRouter
from quorum.server.learned.artifact import MANIFEST, save_router
from quorum.server.learned.cli import main
from quorum.server.learned.data import DataError, RoutingRow, load_prices, load_rows, parse_row
from quorum.server.learned.decision_log import load_feedback_rows
from quorum.server.learned.evaluation import evaluate, find_head, json_summary
from quorum.server.learned.training import FittedHead, train_router

from .conftest import SMALL
from .synthetic import MULTI, STRONG, WEAK, multi_rows, pair_rows, write_jsonl
from .synthetic_log import judged_log, write_log

Trained = tuple[LearnedRouter, dict[str, FittedHead]]
PNG = b"\x89PNG\r\n\x1a\n"
BOM = b"\xef\xbb\xbf"


@pytest.fixture
def artifact(trained: Trained, tmp_path: Path) -> Path:
    save_router(trained[0], tmp_path / "art", {})
    return tmp_path / "art"


def _rows(raw: list[dict[str, Any]]) -> list[RoutingRow]:
    return [parse_row(json.dumps(r), f"row {i}") for i, r in enumerate(raw)]


def _costs(rows: list[dict[str, Any]], costs: dict[str, float]) -> list[dict[str, Any]]:
    """Set ``cost_usd`` of the given models on every row, in place."""
    for row in rows:
        for model, cost in costs.items():
            row["results"][model]["cost_usd"] = cost
    return rows


def _strict_json(text: str) -> Any:
    """``json.loads`` that refuses NaN and ±Infinity, which are not JSON."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


# --- a premium model that costs nothing ------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "costs"),
    [
        (pair_rows, {WEAK: 0.0, STRONG: 0.0}),  # every model free
        (pair_rows, {WEAK: 0.001, STRONG: 0.0}),  # only the strong model free
        (multi_rows, dict.fromkeys(MULTI, 0.0)),
        (multi_rows, {MULTI[-1]: 0.0}),  # only the premium free
    ],
)
def test_a_free_premium_leaves_cost_figures_undefined_not_a_crash(
    make: Any,
    costs: dict[str, float],
    artifact: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = write_jsonl(tmp_path / "free.jsonl", _costs(make(40), costs))
    args = ["eval", "--data", str(data), "--router", str(artifact), "--bootstrap", "20"]
    assert main([*args, "--json", "--plot", str(tmp_path / "curve.png")]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    (entry,) = _strict_json(out).values()
    for key in ("cost_saved_at_95", "cost_fraction"):
        if key in entry:
            assert entry[key] is None and entry[f"{key}_se"] is None
    assert entry.get("calibrated", {}).get("cost_fraction") is None
    assert isinstance(entry["strong_share_at_95"], float)  # figures that need no cost remain
    assert err.count("costs $0 on these rows") == 1
    assert (tmp_path / "curve.png").read_bytes()[:8] == PNG
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "n/a" in out and "nan" not in out and "Traceback" not in err


def test_a_premium_free_on_some_rows_survives_the_bootstrap(trained: Trained) -> None:
    router, _ = trained
    # most resamples draw only rows where the strong model costs nothing
    rows = _costs(pair_rows(30), {WEAK: 0.0, STRONG: 0.0})
    rows[0]["results"][STRONG]["cost_usd"] = 0.01
    multi = _costs(multi_rows(30), {MULTI[-1]: 0.0})
    multi[0]["results"][MULTI[-1]]["cost_usd"] = 0.5
    reports = evaluate(router, _rows(rows + multi), {}, rounds=50)
    summary = json_summary(reports)
    assert math.isfinite(summary["synth-pair"]["cost_saved_at_95"])
    assert math.isfinite(summary["synth-pair"]["cost_saved_at_95_se"])
    assert math.isfinite(summary["synth-multi"]["cost_fraction"])
    assert math.isfinite(summary["synth-multi"]["cost_fraction_se"])


def test_a_row_out_of_range_exits_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = pair_rows(20)
    rows[3]["results"][STRONG]["score"] = 5.0
    data = write_jsonl(tmp_path / "five.jsonl", rows)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"error: five.jsonl:4: results.{STRONG} needs a numeric 'score' from 0 to 1" in err
    assert not (tmp_path / "never").exists()


# --- pools of one model ----------------------------------------------------------------------


def test_a_source_answered_by_one_model_is_refused_naming_it(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = pair_rows(40, source="solo")
    for row in rows:
        del row["results"][WEAK]
    solo = write_jsonl(tmp_path / "solo.jsonl", rows)
    with pytest.raises(DataError, match=r"source 'solo': only 'strong-model' answers its 40 rows"):
        train_router(load_rows([data_dir / "pair.jsonl", solo]), {}, SMALL)
    out = tmp_path / "never"
    assert main(["train", "--data", str(solo), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "error: source 'solo': only 'strong-model' answers" in err
    assert "needs two or more models" in err
    assert not out.exists()


# --- --out that cannot be written ------------------------------------------------------------


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_an_out_that_is_a_file_is_a_one_line_error(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not an artifact")
    data = ["train", "--data", str(data_dir / "pair.jsonl")]
    assert main([*data, "--out", str(taken)]) == 2
    assert f"error: --out {taken}: a file, not a directory" in _one_line_error(capsys)
    assert main([*data, "--out", str(taken / "sub")]) == 2
    assert f"--out {taken / 'sub'}: cannot create it, {taken} is a file" in _one_line_error(capsys)
    assert taken.read_text() == "not an artifact"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_an_out_that_cannot_be_created_fails_before_training(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--data", str(data_dir / "pair.jsonl"), "--out", "/proc/x"]) == 2
    assert "error: --out /proc/x: cannot create it (" in _one_line_error(capsys)


def test_a_failed_artifact_write_is_a_one_line_error(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def refuse(*_: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("quorum.server.learned.artifact.save_router", refuse)
    out = tmp_path / "art"
    assert main(["train", "--data", str(data_dir / "multi.jsonl"), "--out", str(out)]) == 2
    assert f"error: --out {out}: cannot write the artifact (Permission denied)" in (
        _one_line_error(capsys)
    )


# --- a target the cheap model already meets --------------------------------------------------


def _weak_always_right(n: int) -> list[dict[str, Any]]:
    rows = pair_rows(n)
    for row in rows:
        row["results"][WEAK]["score"] = 1.0
    return rows


def test_a_threshold_no_prompt_reaches_is_strict_json_and_loads_back(
    data_dir: Path, tmp_path: Path
) -> None:
    free = _costs(multi_rows(60), {MULTI[-1]: 0.0})  # its calibration figures are undefined
    rows = _rows(_weak_always_right(80) + free)
    router, _ = train_router(rows, load_prices(data_dir / "prices.json"), SMALL)
    head = router.heads["synth-pair"]
    assert head.threshold == math.inf  # never route to the strong model
    assert head.cascade is not None and head.cascade.threshold == math.inf
    save_router(router, tmp_path / "art", {"calibration": {"x": float("nan")}})
    manifest = _strict_json((tmp_path / "art" / MANIFEST).read_text())
    # A build that reads only version 1 would misread the nulls: it refuses version 2.
    assert manifest["format_version"] == 2
    entry = manifest["heads"]["synth-pair"]
    assert entry["threshold"] is None and set(entry["thresholds"].values()) == {None}
    assert entry["cascade"]["threshold"] is None
    assert manifest["calibration"] == {"x": None}
    loaded = LearnedRouter.load(tmp_path / "art")
    back = loaded.heads["synth-pair"]
    assert back.threshold == head.threshold and back.thresholds == head.thresholds
    assert back.cascade is not None and back.cascade.threshold == head.cascade.threshold
    assert back.cascade.thresholds == head.cascade.thresholds
    assert loaded.heads["synth-multi"].threshold is None  # many-model heads keep no threshold
    for row in rows[:40]:
        for source in ("synth-pair", "synth-multi"):
            assert loaded.score(row.prompt, source).recommended == (
                router.score(row.prompt, source).recommended
            )
        response = row.results[WEAK].response or ""
        if row.source == "synth-pair":
            assert loaded.verify(row.prompt, response).escalate is False
            assert router.verify(row.prompt, response).escalate is False


# --- a byte order mark -----------------------------------------------------------------------


def test_a_byte_order_mark_starts_a_file_and_nowhere_else(data_dir: Path, tmp_path: Path) -> None:
    plain = (data_dir / "pair.jsonl").read_bytes()
    marked = tmp_path / "bom.jsonl"
    marked.write_bytes(BOM + plain)
    assert load_rows([marked]) == load_rows([data_dir / "pair.jsonl"])
    first, rest = plain.split(b"\n", 1)
    marked.write_bytes(first + b"\n" + BOM + rest)
    with pytest.raises(DataError, match=r"bom\.jsonl:2: not JSON"):
        load_rows([marked])
    log = write_log(tmp_path / "log.jsonl", judged_log(60))
    marked_log = tmp_path / "bom-log.jsonl"
    marked_log.write_bytes(BOM + log.read_bytes())
    assert load_feedback_rows([marked_log])[0] == load_feedback_rows([log])[0]


def test_eval_reads_a_file_with_a_byte_order_mark(
    artifact: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marked = tmp_path / "multi.jsonl"
    marked.write_bytes(BOM + (data_dir / "multi.jsonl").read_bytes())
    args = ["--data", str(marked), "--router", str(artifact), "--json", "--bootstrap", "0"]
    assert main(["eval", *args]) == 0
    assert _strict_json(capsys.readouterr().out)["synth-multi"]["n"] == 120


# --- a renamed source matched to the head that can judge its cascade -------------------------


@pytest.fixture(scope="module")
def twins(data_dir: Path) -> LearnedRouter:
    """Two pair heads of the same two models: the first without a cascade verifier (its rows
    carry no answers), the second with one."""
    plain = pair_rows(80, source="a-no-answers")
    for row in plain:
        for result in row["results"].values():
            del result["response"]
    answered = pair_rows(80, seed=3, source="b-answers")
    router, _ = train_router(_rows(plain + answered), load_prices(data_dir / "prices.json"), SMALL)
    assert list(router.heads) == ["a-no-answers", "b-answers"]
    assert router.heads["a-no-answers"].cascade is None
    assert router.heads["b-answers"].cascade is not None
    return router


def test_a_tie_goes_to_the_head_with_a_cascade_when_rows_carry_cheap_answers(
    twins: LearnedRouter, data_dir: Path
) -> None:
    renamed = pair_rows(30, seed=7, source="renamed")
    head = find_head(twins, "renamed", _rows(renamed))
    assert head is twins.heads["b-answers"]
    reports = evaluate(twins, _rows(renamed), load_prices(data_dir / "prices.json"), rounds=0)
    assert "cascade_strong_share_at_95" in reports["renamed"].figures
    for row in renamed:  # without the cheap answers: the artifact's order, as before
        del row["results"][WEAK]["response"]
    assert find_head(twins, "renamed", _rows(renamed)) is twins.heads["a-no-answers"]
