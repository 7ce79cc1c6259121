"""``quorum router report`` on files that are, or are not, decision logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from quorum.server.report import main

EMPTY = "no shadow evaluations in the log yet (set shadow.sample_rate in config)\n"


def _shadow(i: int) -> dict[str, Any]:
    return {
        "type": "shadow",
        "request_id": f"r{i}",
        "task": "code",
        "primary_tier": "premium",
        "shadow_tier": "cheap",
        "primary_cost_usd": 0.01,
        "shadow_cost_usd": 0.001,
        "agree": True,
        "outcome": "answered",
    }


def _report(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--log", str(path), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("# Quorum\n\nA router.\nSee docs/.\n", "none of its 3 lines is"),
        ('{"kind":"shadow"\n', "its only line is not"),  # cut short
        ('{"results": {"a": 1}}\n[1, 2]\n"shadow"\n', "none of its 3 lines is"),
        ('{"type": "routing-row"}\n', "its only line is not"),
    ],
)
def test_a_file_that_is_not_a_decision_log_exits_2(
    text: str, lines: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.md"
    path.write_text(text)
    for args in ((), ("--json",)):
        code, out, err = _report(capsys, path, *args)
        assert (code, out) == (2, "")
        assert err == (
            f"quorum router report: {path} is not a decision log: {lines} a JSON object of "
            "type decision, feedback or shadow\n"
        )


def test_a_binary_file_is_not_a_decision_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(bytes(range(256)) * 4)
    code, _, err = _report(capsys, path)
    assert code == 2 and "is not a decision log" in err


def test_one_bad_file_among_logs_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, readme = tmp_path / "decisions.jsonl", tmp_path / "README.md"
    log.write_text(json.dumps(_shadow(1)) + "\n")
    readme.write_text("# Quorum\n")
    capsys.readouterr()
    assert main(["--log", str(log), str(readme)]) == 2
    assert f"{readme} is not a decision log" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        '{"type": "decision", "request_id": "a"}\n{"type": "feedback", "request_id": "a"}\n',
    ],
)
def test_an_empty_log_or_one_without_shadow_lines_is_no_error(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "decisions.jsonl"
    path.write_text(text)
    assert _report(capsys, path) == (0, EMPTY, "")
    assert _report(capsys, path, "--json") == (0, "[]\n", "")


def test_lines_of_a_log_that_are_not_records_are_skipped_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "decisions.jsonl"
    lines = [json.dumps(_shadow(i)) for i in range(3)] + ["not json", '{"type": "shadow"']
    path.write_text("\n".join(lines) + "\n")
    code, out, err = _report(capsys, path, "--json", "--min-samples", "1")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["n"], row["agreement"]) == (3, 1.0)
    assert err == f"quorum router report: {path}: skipped 2 lines that are not records\n"


HUGE = 10**400  # past float's range: float() raised OverflowError
LONG = "7" * 5000  # past int()'s 4300 digits


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("primary_cost_usd", "-0.01", "-0.01"),  # reported a saving of 10100%
        ("shadow_cost_usd", "-1", "-1"),
        ("primary_cost_usd", str(HUGE), "a 401-digit integer"),  # was a traceback
        ("shadow_cost_usd", LONG, "a 5000-digit integer"),  # was skipped as not a record
        ("primary_cost_usd", "NaN", "NaN"),
        ("shadow_cost_usd", '"cheap"', '"cheap"'),
        ("primary_cost_usd", "true", "true"),
    ],
)
def test_a_cost_that_is_not_a_number_of_dollars_is_refused_naming_line_and_field(
    key: str, value: str, shown: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "decisions.jsonl"
    bad = json.dumps({**_shadow(2), key: "@"}).replace('"@"', value)
    path.write_text(json.dumps(_shadow(1)) + "\n\n" + bad + "\n")
    for args in ((), ("--json",)):
        code, out, err = _report(capsys, path, *args)
        assert (code, out) == (2, "")
        assert err == (
            f"quorum router report: {path}:3: {key} must be a number >= 0 (US dollars) or null, "
            f"not {shown}\n"
        )


def test_free_and_unknown_costs_are_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "decisions.jsonl"
    lines = [
        _shadow(1),
        {**_shadow(2), "shadow_cost_usd": 0},
        {**_shadow(3), "shadow_cost_usd": None},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out, _ = _report(capsys, path, "--json", "--min-samples", "1")
    assert code == 0
    (row,) = json.loads(out)
    assert row["n"] == 3 and row["saving"] == round(1 - 0.001 / 0.03, 4)


@pytest.mark.parametrize(
    "line",
    [
        '{"a":' * 100_000 + "1" + "}" * 100_000,  # was a RecursionError traceback
        "[" * 100_000 + "]" * 100_000,
        f'{{"type": "shadow", "n": {LONG}, "d": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ],
)
def test_a_line_nested_too_deeply_to_read_is_skipped_as_not_a_record(
    line: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "decisions.jsonl"
    path.write_text(json.dumps(_shadow(1)) + "\n" + line + "\n")
    code, out, err = _report(capsys, path, "--json", "--min-samples", "1")
    assert code == 0
    assert json.loads(out)[0]["n"] == 1
    assert err == f"quorum router report: {path}: skipped 1 line that is not a record\n"
