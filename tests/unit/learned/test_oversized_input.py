"""``quorum router train/eval`` on numbers too large for a float, integers too long for Python
to read, JSON nested too deeply to read, and data no row of which every model answered: each
is one line naming the file, the line and the field (or the source), exit status 2, never a
traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from quorum.server.learned import LearnedRouter
from quorum.server.learned.artifact import save_router
from quorum.server.learned.cli import main
from quorum.server.learned.data import DataError, load_prices, load_rows
from quorum.server.learned.decision_log import load_feedback_rows
from quorum.server.learned.training import FittedHead

from .synthetic import STRONG, WEAK, pair_rows, write_jsonl, write_prices
from .synthetic_log import judged_log, write_log

Trained = tuple[LearnedRouter, dict[str, FittedHead]]
HUGE = 10**400  # past float's range: float() raises OverflowError
LONG = "7" * 5000  # past int()'s 4300 digits: json.loads raises ValueError


@pytest.fixture
def artifact(trained: Trained, tmp_path: Path) -> Path:
    save_router(trained[0], tmp_path / "art", {})
    return tmp_path / "art"


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith("error: "), err
    return line.removeprefix("error: ")


def _with_line(tmp_path: Path, line: str) -> Path:
    """pair.jsonl's first rows and ``line`` as the third."""
    rows = [json.dumps(r) for r in pair_rows(2)]
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join([*rows, line]) + "\n")
    write_prices(tmp_path / "prices.json")
    return path


def _row(score: str, cost: str = "null") -> str:
    row: dict[str, Any] = pair_rows(3)[2]
    row["results"][STRONG] = {"score": "@score", "cost_usd": "@cost"}
    return json.dumps(row).replace('"@score"', score).replace('"@cost"', cost)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (_row(str(HUGE)), f"results.{STRONG} needs a numeric 'score' from 0 to 1, not a 401-digit"),
        (_row(LONG), f"results.{STRONG} needs a numeric 'score' from 0 to 1, not a 5000-digit"),
        (_row("-" + LONG), f"results.{STRONG} needs a numeric 'score' from 0 to 1, not a 5000-di"),
        (_row("1", str(HUGE)), f"results.{STRONG}.cost_usd must be a number >= 0 (US dollars)"),
        (_row("1", LONG), f"results.{STRONG}.cost_usd must be a number >= 0 (US dollars)"),
        ("[" * 100_000 + "]" * 100_000, "not a row (JSON nested too deeply to read)"),
        ('{"a":' * 100_000 + "1" + "}" * 100_000, "not a row (JSON nested too deeply to read)"),
        # both: the long integer first, then the nesting (read again for the integer)
        (
            f'{{"n": {LONG}, "d": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "not a row (JSON nested too deeply to read)",
        ),
    ],
)
@pytest.mark.parametrize("command", ["eval", "train"])
def test_numbers_and_nesting_past_what_python_reads_are_one_line_naming_the_field(
    line: str,
    problem: str,
    command: str,
    artifact: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Each was a traceback, exit 1: OverflowError, ValueError "Exceeds the limit (4300
    # digits) for integer string conversion", RecursionError.
    path = _with_line(tmp_path, line)
    args = {
        "eval": ["eval", "--data", str(path), "--router", str(artifact), "--bootstrap", "0"],
        "train": ["train", "--data", str(path), "--out", str(tmp_path / "never")],
    }[command]
    assert main(args) == 2
    assert _one_line_error(capsys).startswith(f"odd.jsonl:3: {problem}")
    assert not (tmp_path / "never").exists()


def test_training_data_no_row_of_which_every_model_answered_names_the_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every model answers some rows, none all: the threshold is calibrated on rows every
    # model answered. It was ValueError "no prompts to build a curve from", a traceback.
    rows = pair_rows(20)
    for i, row in enumerate(rows):
        del row["results"][WEAK if i % 2 else STRONG]
    data = write_jsonl(tmp_path / "partial.jsonl", rows)
    write_prices(tmp_path / "prices.json")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "art")]) == 2
    line = _one_line_error(capsys)
    assert line.startswith(
        "source 'synth-pair': none of its 20 rows has a result for every one of its models "
        f"({STRONG}, {WEAK}); --data needs rows every model answered"
    )
    assert "--feedback" in line
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, r"prices\.json: JSON nested too deeply to read"),
        (
            json.dumps({WEAK: {"input_per_mtok": "@", "output_per_mtok": 1}}).replace(
                '"@"', str(HUGE)
            ),
            rf"'{WEAK}' needs 'input_per_mtok', a number >= 0",
        ),
        (
            json.dumps({WEAK: {"input_per_mtok": 1, "output_per_mtok": "@"}}).replace('"@"', LONG),
            rf"'{WEAK}' needs 'output_per_mtok', a number >= 0",
        ),
    ],
)
def test_prices_past_what_python_reads_are_a_data_error(
    content: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_prices(path)


def test_a_decision_log_with_numbers_too_large_for_a_float_trains(tmp_path: Path) -> None:
    # A cost or a feedback score of 400 digits was an OverflowError while reading the log;
    # it is read as no number (the cost priced instead, the score no verdict).
    lines = judged_log(60)  # a decision, then its feedback, for each request
    lines[1] = {**lines[1], "kind": "score", "score": HUGE}  # on req-0
    lines[2]["cost_usd"] = lines[2]["attempts"][0]["cost_usd"] = HUGE  # req-1's decision
    path = write_log(tmp_path / "decisions.jsonl", lines)
    rows, summary = load_feedback_rows([path])
    assert summary.decisions == 60
    prompts = {r.prompt.split(":")[0]: r for r in rows}
    assert "Request 0" not in prompts  # a score that is no number is no verdict
    (result,) = prompts["Request 1"].results.values()
    assert result.cost_usd is None  # priced from prices.json instead


def test_a_long_integer_elsewhere_in_a_row_is_no_error(tmp_path: Path) -> None:
    # Only the fields read as numbers must be numbers: an id that is a 5000-digit integer
    # is kept, as its digits, not a traceback.
    row = json.dumps(pair_rows(1)[0]).replace('"synth-pair-0"', LONG, 1)
    path = tmp_path / "ids.jsonl"
    path.write_text(row + "\n")
    (loaded,) = load_rows([path])
    assert loaded.id == LONG
