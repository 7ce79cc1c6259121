"""The ``quorum router`` command: train writes an artifact, eval prints the figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quorum.server.learned import LearnedRouter
from quorum.server.learned.artifact import save_router
from quorum.server.learned.cli import main
from quorum.server.learned.training import FittedHead

Trained = tuple[LearnedRouter, dict[str, FittedHead]]


@pytest.fixture
def artifact(trained: Trained, tmp_path: Path) -> Path:
    router, _ = trained
    save_router(router, tmp_path / "art", {})
    return tmp_path / "art"


def test_eval_json_has_the_keys(
    artifact: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(data_dir / "pair.jsonl"), str(data_dir / "multi.jsonl")]
    code = main(
        ["eval", "--data", *files, "--router", str(artifact), "--json", "--bootstrap", "20"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"synth-pair", "synth-multi"}
    for entry in out.values():
        assert {"strong_share_at_95", "cost_saved_at_95", "strong_share_at_80", "apgr", "n"} <= set(
            entry
        )
    assert {"cascade_strong_share_at_95", "cascade_strong_share_at_50"} <= set(out["synth-pair"])
    assert {"score_at_half_cost", "cost_fraction"} <= set(out["synth-multi"])
    assert out["synth-pair"]["n"] == 160


def test_eval_text_and_plot(
    artifact: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "curve.png"
    code = main(
        [
            "eval",
            "--data",
            str(data_dir / "pair.jsonl"),
            str(data_dir / "multi.jsonl"),
            "--router",
            str(artifact),
            "--plot",
            str(png),
            "--bootstrap",
            "5",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "[synth-pair]" in text and "strong share at 95%" in text and "cascade" in text
    assert "[synth-multi]" in text and "mean score at <= 50% of premium cost" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_writes_an_artifact(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "trained"
    code = main(
        ["train", "--data", str(data_dir / "multi.jsonl"), "--out", str(out), "--folds", "2"]
    )
    assert code == 0
    assert "synth-multi: multi, 3 models" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["training_data"]["files"] == ["multi.jsonl"]
        and len(manifest["training_data"]["sha256"]) == 64
    )
    assert LearnedRouter.load(out).default_source == "synth-multi"


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--data", str(tmp_path / "none.jsonl"), "--router", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err


def test_eval_falls_back_to_the_prices_trained_with(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "trained"
    assert (
        main(["train", "--data", str(data_dir / "pair.jsonl"), "--out", str(out), "--folds", "2"])
        == 0
    )
    assert (
        json.loads((out / "manifest.json").read_text())["prices"]["strong-model"]["input_per_mtok"]
        == 10.0
    )
    lonely = tmp_path / "elsewhere"
    lonely.mkdir()
    (lonely / "pair.jsonl").write_bytes((data_dir / "pair.jsonl").read_bytes())
    monkeypatch.setenv("QUORUM_ROUTING_DATA", str(tmp_path / "no-data-here"))
    capsys.readouterr()
    code = main(
        [
            "eval",
            "--data",
            str(lonely / "pair.jsonl"),
            "--router",
            str(out),
            "--json",
            "--bootstrap",
            "0",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["synth-pair"]["n"] == 160


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--quality-target", "1.5"], "--quality-target"),
        (["--quality-target", "0"], "--quality-target"),
        (["--quality-target", "nan"], "--quality-target"),
        (["--quality-target", "high"], "--quality-target"),
        (["--folds", "1"], "--folds"),
        (["--folds", "2.5"], "--folds"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_training_arguments_exit_2_naming_the_option(
    args: list[str],
    option: str,
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Checked before any data is read: an error naming the option, never a traceback.
    code = main(
        ["train", "--data", str(data_dir / "pair.jsonl"), "--out", str(tmp_path / "a"), *args]
    )
    assert code == 2
    assert f"argument {option}:" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_bad_eval_arguments_exit_2_naming_the_option(
    artifact: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(data_dir / "pair.jsonl")
    assert main(["eval", "--data", data, "--router", str(artifact), "--bootstrap", "-1"]) == 2
    assert "argument --bootstrap:" in capsys.readouterr().err


def test_more_folds_than_prompts_exit_2(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(data_dir / "multi.jsonl")  # 120 distinct prompts
    assert main(["train", "--data", data, "--out", str(tmp_path / "a"), "--folds", "121"]) == 2
    assert "--folds 121: source 'synth-multi' has only 120" in capsys.readouterr().err


def test_a_decision_log_or_no_rows_is_not_training_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "decisions.jsonl"
    log.write_text(
        '{"type":"decision","request_id":"d-0","task":"math","model":"flash",'
        '"prompt":"What is 2 * 7?"}\n'
        '{"type":"feedback","request_id":"d-0","kind":"thumbs_up"}\n'
    )
    assert main(["train", "--data", str(log), "--out", str(tmp_path / "a")]) == 2
    assert "not a training format" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["train", "--data", str(empty), "--out", str(tmp_path / "a")]) == 2
    assert "no training rows" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "eval"])
def test_an_unknown_flag_is_reported_by_its_subcommand(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [command, "--bogus"] + (["--data", "x.jsonl"] if command == "eval" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"quorum router {command}: error: unrecognized arguments: --bogus" in err
