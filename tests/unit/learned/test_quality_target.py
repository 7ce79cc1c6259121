"""``classifier.learned.quality_target``: the server chooses which stored calibration decides."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from quorum.server.classify.build import check_learned, learned_router
from quorum.server.config import parse_config
from quorum.server.errors import ConfigError
from quorum.server.learned import DEFAULT_ARTIFACT, LearnedRouter
from quorum.server.learned.artifact import MANIFEST, save_router
from quorum.server.learned.heads import QualityTargetError
from quorum.server.learned.training import FittedHead
from tests.conftest import sim_config

Trained = tuple[LearnedRouter, dict[str, FittedHead]]
GAP_TARGETS = ("95% of premium", "80% of gap", "50% of gap")


@pytest.fixture
def artifact(trained: Trained, tmp_path: Path) -> Path:
    save_router(trained[0], tmp_path / "art", {})
    return tmp_path / "art"


@pytest.fixture
def old_artifact(artifact: Path, tmp_path: Path) -> Path:
    """The artifact as written before many-model heads stored a lambda for each target."""
    old = Path(shutil.copytree(artifact, tmp_path / "old"))
    manifest = json.loads((old / MANIFEST).read_text())
    for head in manifest["heads"].values():
        del head["lambdas"]
    (old / MANIFEST).write_text(json.dumps(manifest))
    return old


def _config(**learned: Any) -> Any:
    return parse_config(sim_config(classifier={"learned": learned}))


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        (0.95, "95% of premium"),
        (1, "100% of premium"),
        ("95%", "95% of premium"),
        ("95% of premium", "95% of premium"),
        ("80% of gap", "80% of gap"),
        (" 50 % of the GAP", "50% of gap"),
        (0.8, "80% of premium"),  # a number is a fraction of the premium's quality
    ],
)
def test_the_config_accepts_a_fraction_or_a_stated_target(value: object, canonical: str) -> None:
    config = _config(quality_target=value)
    assert config.classifier.learned is not None
    assert config.classifier.learned.quality_target == canonical


@pytest.mark.parametrize("value", [0, 1.5, -0.1, "high", "80 percent", "0% of gap", True])
def test_a_malformed_target_is_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        _config(quality_target=value)
    assert any(p.startswith("classifier.learned.quality_target") for p in info.value.problems)


def test_training_stores_a_lambda_for_each_target(trained: Trained, artifact: Path) -> None:
    head = trained[0].head("synth-multi")
    assert set(head.lambdas or {}) == {"95", "80", "50"}
    assert (head.lambdas or {})["95"] == head.lam  # the trained target is 0.95
    assert head.stored_targets() == GAP_TARGETS
    assert trained[0].head("synth-pair").stored_targets() == GAP_TARGETS
    manifest = json.loads((artifact / MANIFEST).read_text())
    assert set(manifest["heads"]["synth-multi"]["lambdas"]) == {"95", "80", "50"}
    assert LearnedRouter.load(artifact).head("synth-multi").lambdas == head.lambdas


@pytest.mark.parametrize("label", ["80", "50"])
def test_a_pair_head_decides_at_the_chosen_stored_threshold(trained: Trained, label: str) -> None:
    router = trained[0]
    head = router.head("synth-pair")
    assert head.cascade is not None
    moved = router.with_quality_target(f"{label}% of gap", "synth-pair")
    new = moved.head("synth-pair")
    assert new.threshold == (head.thresholds or {})[label]
    assert new.cascade is not None and new.cascade.threshold == head.cascade.thresholds[label]
    prompt = "Question 2: the prime matrix of 3?\nA. 1\nB. 2\nAnswer:"
    scores = moved.score(prompt, "synth-pair")
    assert scores.threshold == new.threshold and scores.target == f"{label}% of gap"
    assert router.score(prompt, "synth-pair").target == "95% of premium"
    assert moved.verify(prompt, "#### 3", "synth-pair").threshold == new.cascade.threshold
    assert moved.head("synth-multi") is router.head("synth-multi")  # the others unchanged


def test_a_multi_head_decides_at_the_chosen_stored_lambda(trained: Trained) -> None:
    router = trained[0]
    head = router.head("synth-multi")
    for target, label in zip(GAP_TARGETS, ("95", "80", "50"), strict=True):
        moved = router.with_quality_target(target, "synth-multi").head("synth-multi")
        assert moved.lam == (head.lambdas or {})[label] and moved.target == target


def test_a_target_without_a_stored_calibration_is_refused_listing_them(trained: Trained) -> None:
    router = trained[0]
    with pytest.raises(QualityTargetError) as info:
        router.with_quality_target("80% of premium", "synth-pair")
    message = str(info.value)
    assert "\"80% of premium\" has no calibration stored for source 'synth-pair'" in message
    assert '"95% of premium" (trained), "80% of gap", "50% of gap"' in message


def test_an_older_artifact_loads_and_offers_only_its_trained_lambda(old_artifact: Path) -> None:
    router = LearnedRouter.load(old_artifact)
    head = router.head("synth-multi")
    assert not head.lambdas and head.stored_targets() == ("95% of premium",)
    assert router.with_quality_target("95% of premium", "synth-multi").head("synth-multi").lam == (
        head.lam
    )
    refused = r"stored: \"95% of premium\" \(trained\).*retrain"
    with pytest.raises(QualityTargetError, match=refused):
        router.with_quality_target("80% of gap", "synth-multi")


def test_the_server_serves_the_configured_calibration(artifact: Path) -> None:
    config = _config(artifact=str(artifact), source="synth-pair", quality_target="50% of gap")
    check_learned(config)  # what check-config checks
    served = learned_router(config)
    assert served is not None
    stored = LearnedRouter.load(artifact).head("synth-pair")
    assert served.head("synth-pair").threshold == (stored.thresholds or {})["50"]
    default = learned_router(_config(artifact=str(artifact), source="synth-pair"))
    assert default is not None and default.head("synth-pair").threshold == stored.threshold


@pytest.mark.parametrize(
    ("learned", "problem"),
    [
        (
            {"source": "synth-pair", "quality_target": 0.8},
            'classifier.learned.quality_target: "80% of premium" has no calibration stored for '
            'source \'synth-pair\' (stored: "95% of premium" (trained), "80% of gap", '
            '"50% of gap";',
        ),
        (
            {"source": "synth-multi", "quality_target": "50% of gap", "old": True},
            'classifier.learned.quality_target: "50% of gap" has no calibration stored for '
            "source 'synth-multi' (stored: \"95% of premium\" (trained);",
        ),
    ],
)
def test_a_target_the_artifact_lacks_is_refused_at_start_up(
    learned: dict[str, Any], problem: str, artifact: Path, old_artifact: Path
) -> None:
    from quorum.server.router import Router

    settings = {k: v for k, v in learned.items() if k != "old"}
    config = _config(artifact=str(old_artifact if learned.get("old") else artifact), **settings)
    for build in (check_learned, Router):  # what check-config checks is what serve builds
        with pytest.raises(ConfigError) as info:
            build(config)
        (found,) = info.value.problems
        assert found.startswith(problem), found


def test_the_committed_artifact_serves_each_pair_target() -> None:
    stored = LearnedRouter.load(DEFAULT_ARTIFACT).head("routellm-mmlu")
    for target, label in zip(GAP_TARGETS, ("95", "80", "50"), strict=True):
        config = _config(source="routellm-mmlu", quality_target=target)
        served = learned_router(config)
        assert served is not None
        assert served.head("routellm-mmlu").threshold == (stored.thresholds or {})[label]


@pytest.mark.parametrize("source", ["routerbench", "dcrouter"])
def test_the_committed_artifact_serves_each_many_model_target(source: str) -> None:
    stored = LearnedRouter.load(DEFAULT_ARTIFACT).head(source)
    assert set(stored.lambdas or {}) == {"95", "80", "50"}
    for target, label in zip(GAP_TARGETS, ("95", "80", "50"), strict=True):
        served = learned_router(_config(source=source, quality_target=target))
        assert served is not None
        assert served.head(source).lam == (stored.lambdas or {})[label]
