"""Loading the JSONL format and pricing rows."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quorum.server.learned.data import (
    DATA_ENV,
    DEFAULT_OUTPUT_TOKENS,
    DataError,
    ModelResult,
    Price,
    build_table,
    default_data_dir,
    estimate_tokens,
    is_letter_answer_prompt,
    load_prices,
    load_rows,
    output_tokens,
    result_cost,
)

from .synthetic import STRONG, WEAK, write_jsonl


def test_loads_rows_with_any_number_of_models(data_dir: Path) -> None:
    rows = load_rows([data_dir / "pair.jsonl", data_dir / "multi.jsonl"])
    assert len(rows) == 280
    assert {len(r.results) for r in rows} == {2, 3}
    first = rows[0]
    assert first.source == "synth-pair" and first.category == "maths"
    assert first.results[WEAK].response is not None


def test_bad_lines_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"source": "s", "prompt": "p", "results": {"m": {"score": 1}}}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not JSON"):
        load_rows([path])
    path.write_text('{"source": "s", "prompt": "p", "results": {"m": {}}}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: results.m needs a numeric 'score'"):
        load_rows([path])
    with pytest.raises(DataError, match="no such file"):
        load_rows([tmp_path / "missing.jsonl"])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("score", "NaN", r"results\.m needs a numeric 'score' from 0 to 1, not NaN"),
        ("score", "5.0", r"results\.m needs a numeric 'score' from 0 to 1, not 5\.0"),
        ("score", "-0.5", r"results\.m needs a numeric 'score' from 0 to 1, not -0\.5"),
        ("score", "true", r"results\.m needs a numeric 'score' from 0 to 1, not true"),
        ("score", "null", r"results\.m needs a numeric 'score' from 0 to 1, not null"),
        ("cost_usd", "-1", r"results\.m\.cost_usd must be a number >= 0 .* not -1"),
        ("cost_usd", "Infinity", r"results\.m\.cost_usd must be a number >= 0 .* not Infinity"),
        ("cost_usd", "NaN", r"results\.m\.cost_usd must be a number >= 0 .* not NaN"),
        ("cost_usd", '"0.1"', r"results\.m\.cost_usd must be a number >= 0 .* not \"0\.1\""),
        ("prompt", "null", r"'prompt' must be a string, not null"),
        ("prompt", "12345", r"'prompt' must be a string, not 12345"),
        ("source", "null", r"'source' must be a non-empty string, not null"),
        ("source", '""', r"'source' must be a non-empty string, not \"\""),
    ],
)
def test_out_of_range_and_mistyped_fields_are_refused_naming_line_and_field(
    field: str, value: str, message: str, tmp_path: Path
) -> None:
    result: dict[str, Any] = {"score": 1, "cost_usd": 0.01}
    row: dict[str, Any] = {"source": "s", "prompt": "p", "results": {"m": result}}
    good = json.dumps(row)
    if field in result:
        result[field] = "@"
    else:
        row[field] = "@"
    path = tmp_path / "odd.jsonl"
    path.write_text(good + "\n" + json.dumps(row).replace('"@"', value) + "\n")
    with pytest.raises(DataError, match=r"^odd\.jsonl:2: " + message):
        load_rows([path])


def test_scores_from_0_to_1_and_free_or_unknown_costs_are_accepted(tmp_path: Path) -> None:
    results = {
        "a": {"score": 0, "cost_usd": 0},
        "b": {"score": 1.0, "cost_usd": None},
        "c": {"score": 0.25, "cost_usd": 0.003},
    }
    path = write_jsonl(tmp_path / "ok.jsonl", [{"source": "s", "prompt": "", "results": results}])
    (row,) = load_rows([path])
    assert {m: (r.score, r.cost_usd) for m, r in row.results.items()} == {
        "a": (0.0, 0.0),
        "b": (1.0, None),
        "c": (0.25, 0.003),
    }


def test_token_estimate_is_four_characters_a_token() -> None:
    assert estimate_tokens("") == 1
    assert estimate_tokens("A") == 1
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("x" * 400) == 100


def test_multiple_choice_answers_cost_one_output_token() -> None:
    mmlu = "Which is prime?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:"
    assert is_letter_answer_prompt(mmlu)
    assert output_tokens(mmlu, ModelResult(1.0)) == 1
    assert not is_letter_answer_prompt("Write a poem about autumn.")
    assert output_tokens("Write a poem.", ModelResult(1.0)) == DEFAULT_OUTPUT_TOKENS
    assert output_tokens("Write a poem.", ModelResult(1.0, response="x" * 40)) == 10


def test_cost_prefers_cost_usd_then_prices() -> None:
    prices = {STRONG: Price(10.0, 30.0)}
    prompt = "Which is prime?\nA. 4\nB. 7\nAnswer:"  # 33 chars -> 9 tokens, 1 output token
    assert result_cost(prompt, STRONG, ModelResult(1.0, cost_usd=0.5), prices) == 0.5
    expected = (9 * 10.0 + 1 * 30.0) / 1e6
    assert math.isclose(result_cost(prompt, STRONG, ModelResult(1.0), prices), expected)
    with pytest.raises(DataError, match=r"no cost_usd and no entry in prices\.json"):
        result_cost(prompt, "unknown", ModelResult(1.0), prices)


def test_table_orders_models_by_cost_and_marks_missing(tmp_path: Path) -> None:
    rows = [
        {
            "id": "a",
            "source": "s",
            "prompt": "p",
            "results": {
                "dear": {"score": 1, "cost_usd": 2.0},
                "cheap": {"score": 0, "cost_usd": 1.0},
            },
        },
        {
            "id": "b",
            "source": "s",
            "prompt": "q",
            "results": {"cheap": {"score": 1, "cost_usd": 1.0}},
        },
    ]
    table = build_table(load_rows([write_jsonl(tmp_path / "s.jsonl", rows)]), {})
    assert table.models == ("cheap", "dear")
    assert np.isnan(table.scores[1, 1])
    assert table.complete().ids == ("a",)


def test_data_dir_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv(DATA_ENV)
    assert default_data_dir().parts[-3:] == ("shared", "data", "routing")
    assert load_prices(tmp_path / "absent.json") == {}


def test_a_decision_log_is_refused_as_not_a_training_format(tmp_path: Path) -> None:
    # The decision log has one model's answer per request, not every model's result on the
    # prompt; the message says so and names the format that is read.
    path = tmp_path / "decisions.jsonl"
    path.write_text(
        '{"type":"decision","request_id":"d-0","task":"math","model":"flash",'
        '"prompt":"What is 2 * 7?"}\n'
        '{"type":"feedback","request_id":"d-0","kind":"thumbs_up"}\n'
    )
    with pytest.raises(DataError, match=r"decisions\.jsonl:1: a decision log line") as err:
        load_rows([path])
    assert "not a training format" in str(err.value)
    assert "'source', 'prompt' and 'results'" in str(err.value)
