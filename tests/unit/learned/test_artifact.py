"""Saving and loading the artifact: same scores back, clear errors on a wrong version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quorum.server.learned import FORMAT_VERSION, ArtifactError, LearnedRouter
from quorum.server.learned.artifact import MANIFEST, WEIGHTS, save_router
from quorum.server.learned.training import FittedHead

Trained = tuple[LearnedRouter, dict[str, FittedHead]]
PROMPTS = [
    "Question 1: the prime matrix of 3?\nA. 1\nB. 2\nAnswer:",
    "Task 2: say hello politely now",
]


@pytest.fixture
def saved(trained: Trained, tmp_path: Path) -> Path:
    router, _ = trained
    save_router(router, tmp_path / "art", {"training_data": {"sha256": "abc"}})
    return tmp_path / "art"


def test_round_trip_scores_identically(trained: Trained, saved: Path) -> None:
    router, _ = trained
    loaded = LearnedRouter.load(saved)
    assert loaded.sources == router.sources and loaded.default_source == router.default_source
    for source in router.sources:
        for prompt in PROMPTS:
            a, b = router.score(prompt, source), loaded.score(prompt, source)
            np.testing.assert_allclose(a.expected_scores, b.expected_scores, rtol=0, atol=1e-12)
            assert a.recommended == b.recommended
    pair = loaded.head("synth-pair")
    assert pair.cascade is not None and pair.threshold == router.head("synth-pair").threshold
    assert loaded.verify(PROMPTS[0], "#### 4", "synth-pair").threshold == pair.cascade.threshold


def test_manifest_is_versioned_and_readable(saved: Path) -> None:
    manifest = json.loads((saved / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["training_data"]["sha256"] == "abc"
    head = manifest["heads"]["synth-pair"]
    assert head["kind"] == "pair" and head["models"] == ["weak-model", "strong-model"]
    assert set(head["thresholds"]) == {"95", "80", "50"}
    assert manifest["heads"]["synth-multi"]["lambda"] is not None


def test_wrong_format_version_is_a_clear_error(saved: Path) -> None:
    path = saved / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["format_version"] = FORMAT_VERSION + 2
    path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"format_version 3 is not supported .* retrain"):
        LearnedRouter.load(saved)


def test_missing_pieces_are_clear_errors(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no router manifest here"):
        LearnedRouter.load(tmp_path / "empty")
    (saved / WEIGHTS).unlink()
    with pytest.raises(ArtifactError, match=r"weights\.npz: missing"):
        LearnedRouter.load(saved)


def test_committed_default_artifact_loads_and_is_small() -> None:
    from quorum.server.learned import DEFAULT_ARTIFACT

    if not (DEFAULT_ARTIFACT / MANIFEST).is_file():
        pytest.skip("default artifact not built")
    size = sum(p.stat().st_size for p in DEFAULT_ARTIFACT.iterdir())
    assert size < 3_000_000
    router = LearnedRouter.load(DEFAULT_ARTIFACT)
    scores = router.score("What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:")
    assert scores.recommended in scores.models


def test_round_trip_keeps_the_warm_words(trained: Trained, saved: Path) -> None:
    router, _ = trained
    loaded = LearnedRouter.load(saved)
    for source in router.sources:
        before = router.head(source).space.blocks
        after = loaded.head(source).space.blocks
        assert [b.warm_words for b in before] == [b.warm_words for b in after]
        assert any(b.warm_words for b in after)
