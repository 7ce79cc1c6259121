"""``quorum router``: unreadable input is one line and exit 2, and ``--plot`` says what it wrote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from quorum.server.learned import ArtifactError, LearnedRouter
from quorum.server.learned.artifact import MANIFEST, WEIGHTS, save_router
from quorum.server.learned.cli import main
from quorum.server.learned.data import DataError, load_prices, load_rows
from quorum.server.learned.decision_log import load_feedback_rows
from quorum.server.learned.training import FittedHead

Trained = tuple[LearnedRouter, dict[str, FittedHead]]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def artifact(trained: Trained, tmp_path: Path) -> Path:
    save_router(trained[0], tmp_path / "art", {})
    return tmp_path / "art"


@pytest.fixture
def not_utf8(data_dir: Path, tmp_path: Path) -> Path:
    """A copy of pair.jsonl saved as UTF-16 (what some editors write)."""
    path = tmp_path / "utf16.jsonl"
    text = (data_dir / "pair.jsonl").read_text(encoding="utf-8")
    path.write_bytes(text.encode("utf-16"))
    return path


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("command", ["eval", "train", "train --feedback"])
def test_a_file_that_is_not_utf8_is_a_one_line_error(
    command: str,
    not_utf8: Path,
    artifact: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = ["--out", str(tmp_path / "never")]
    args = {
        "eval": ["eval", "--data", str(not_utf8), "--router", str(artifact)],
        "train": ["train", "--data", str(not_utf8), *out],
        "train --feedback": ["train", "--feedback", str(not_utf8), *out],
    }[command]
    assert main(args) == 2
    assert "utf16.jsonl:1: not UTF-8 text (byte 0xff at column 1)" in _one_line_error(capsys)
    assert not (tmp_path / "never").exists()


def test_loaders_name_the_line_that_is_not_utf8(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "late.jsonl"
    good = (data_dir / "pair.jsonl").read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(good[:2]) + b'{"prompt": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"late\.jsonl:3: not UTF-8 text \(byte 0xe9 at column"):
        load_rows([path])
    with pytest.raises(DataError, match=r"late\.jsonl:1: a routing data row"):
        load_feedback_rows([path])  # read as far as the first line: routing data, not a log


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", r"prices\.json:1: not JSON"),
        (b"\xff\xfe{}", r"prices\.json: not UTF-8 text"),
        (b"[1, 2]", r"prices\.json: prices must be a JSON object"),
        (b'{"m": {"input_per_mtok": "ten", "output_per_mtok": 1}}', r"'m' needs 'input_per_mtok'"),
        (b'{"m": {"input_per_mtok": 1}}', r"'m' needs 'output_per_mtok'"),
        (b'{"m": 3}', r"'m' needs 'input_per_mtok'"),
    ],
)
def test_a_malformed_prices_file_is_a_data_error(
    content: bytes, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "prices.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_prices(path)


def test_eval_with_bad_prices_exits_2(
    artifact: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "held-out"
    folder.mkdir()
    shutil.copy(data_dir / "pair.jsonl", folder / "pair.jsonl")
    (folder / "prices.json").write_text("{oops")  # beside the data
    data = ["--data", str(folder / "pair.jsonl"), "--router", str(artifact)]
    assert main(["eval", *data]) == 2
    assert "prices.json:1: not JSON" in _one_line_error(capsys)
    for bad in (tmp_path / "missing.json", tmp_path):  # an explicit --prices must be a file
        assert main(["eval", *data, "--prices", str(bad)]) == 2
        assert f"--prices {bad}: " in _one_line_error(capsys)
    assert main(["train", "--data", str(folder / "pair.jsonl"), "--out", str(tmp_path / "a")]) == 2
    assert "prices.json:1: not JSON" in _one_line_error(capsys)


@pytest.mark.parametrize(
    "damage",
    [
        b"not a zip archive",
        "truncated",
        "bad member",
    ],
)
def test_eval_on_a_damaged_weights_file_exits_2(
    damage: bytes | str,
    artifact: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    weights = artifact / WEIGHTS
    raw = weights.read_bytes()
    if damage == "truncated":
        weights.write_bytes(raw[: len(raw) // 2])
    elif damage == "bad member":  # a zip whose first member's data is corrupted
        cut = raw.index(b".npy") + 200
        weights.write_bytes(raw[:cut] + bytes(64) + raw[cut + 64 :])
    else:
        assert isinstance(damage, bytes)
        weights.write_bytes(damage)
    with pytest.raises(ArtifactError, match=r"weights\.npz is damaged"):
        LearnedRouter.load(artifact)
    data = ["--data", str(data_dir / "pair.jsonl"), "--router", str(artifact)]
    assert main(["eval", *data]) == 2
    line = _one_line_error(capsys)
    assert f"{artifact}: not a usable router artifact: weights.npz is damaged" in line


def test_a_manifest_that_is_not_utf8_is_an_artifact_error(artifact: Path) -> None:
    (artifact / MANIFEST).write_bytes(b"\xff\xfe{}")
    with pytest.raises(ArtifactError, match=r"manifest\.json: not UTF-8"):
        LearnedRouter.load(artifact)


@pytest.mark.parametrize(
    ("name", "written"),
    [("curve.png", "curve.png"), ("curve", "curve.png"), ("curve.pdf", "curve.pdf.png")],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_plot_is_always_a_png_and_the_path_printed_is_the_file_written(
    name: str,
    written: str,
    as_json: bool,
    artifact: Path,
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "plots" / name
    args = ["eval", "--data", str(data_dir / "multi.jsonl"), "--router", str(artifact)]
    args += ["--bootstrap", "0", "--plot", str(target)] + (["--json"] if as_json else [])
    assert main(args) == 0
    out, err = capsys.readouterr()
    path = tmp_path / "plots" / written
    assert path.read_bytes()[:8] == PNG
    assert sorted(p.name for p in path.parent.iterdir()) == [written]
    assert f"plot written to {path}\n" in (err if as_json else out)
    if as_json:
        assert set(json.loads(out)) == {"synth-multi"}  # stdout stays one JSON object
