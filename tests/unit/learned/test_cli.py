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
