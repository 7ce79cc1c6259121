"""Training from the decision log: feedback joined to decisions becomes partial rows, a head
calibrated model-based, served like any other; eval refuses the log (it needs full rows)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quorum.server.classify.build import check_learned, learned_router
from quorum.server.classify.learned import LearnedClassifier
from quorum.server.config import parse_config
from quorum.server.domain import Message, Role, RouteRequest
from quorum.server.learned import DEFAULT_ARTIFACT, LearnedRouter
from quorum.server.learned.artifact import read_manifest
from quorum.server.learned.cli import main
from quorum.server.learned.data import DataError, build_table
from quorum.server.learned.decision_log import load_feedback_rows
from quorum.server.learned.training import MODEL_BASED, train_partial_head
from tests.conftest import sim_config

from .conftest import SMALL
from .synthetic_log import CHEAP, DEAR, MIDDLE, decision, feedback, judged_log, write_log

MATHS = "Request 9999: compute the integral derivative matrix for 7"
GREETING = "Request 9998: say hello thanks cheers for 7"


def _extras() -> list[dict[str, Any]]:
    """Lines that must be skipped (and counted), and verdict-order cases."""
    lines: list[dict[str, Any]] = [
        decision("np-1", CHEAP, None),
        feedback("np-1", "thumbs_up"),
        decision("c-1", CHEAP, "a cached prompt", cached=True),
        feedback("c-1", "thumbs_up"),
        decision("nm-1", "", "a prompt nobody answered"),
        feedback("nm-1", "thumbs_down"),
        decision("l-1", CHEAP, "a labelled prompt"),
        feedback("l-1", "label") | {"label": "billing"},
        decision("nf-1", CHEAP, "a prompt without feedback"),
        feedback("ghost", "thumbs_up"),
        {"type": "shadow", "request_id": "req-0", "agree": True, "outcome": "compared"},
        # first verdict wins; a later one (first_verdict false) does not count
        decision("fv-1", CHEAP, "first verdict one"),
        feedback("fv-1", "thumbs_down"),
        feedback("fv-1", "thumbs_up", first=False),
        # a label is no verdict; a score of exactly 0.5 is "right"
        decision("fv-2", CHEAP, "first verdict two"),
        feedback("fv-2", "label") | {"label": "x"},
        feedback("fv-2", "score", 0.5),
        # replicas' logs concatenated: the line the server marked first wins over an earlier one
        decision("fv-3", CHEAP, "first verdict three"),
        feedback("fv-3", "thumbs_up", first=False),
        feedback("fv-3", "thumbs_down"),
    ]
    for k in range(3):  # a model with too few prompts is dropped
        lines += [decision(f"t-{k}", "tiny", f"tiny prompt {k}"), feedback(f"t-{k}", "thumbs_up")]
    return lines


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("decision-log")
    return write_log(folder / "decisions.jsonl", judged_log(120) + _extras())


def test_decisions_with_a_verdict_become_one_model_rows_and_the_rest_is_counted(
    log: Path,
) -> None:
    rows, summary = load_feedback_rows([log])
    assert summary.decisions == 120 + 11
    assert summary.feedback_lines == 120 + 14
    assert summary.other_lines == 1
    assert summary.rows == len(rows) == 120 + 3
    assert summary.skipped == {
        "no prompt": 1,
        "cached": 1,
        "no answering model": 1,
        "label-only feedback": 1,
        "no feedback": 1,
        "duplicate request_id": 0,
        "rows of a model with too few prompts": 3,
    }
    assert summary.orphan_feedback == 1
    assert summary.dropped_models == {"tiny": 3}
    assert set(summary.rows_per_model) == {CHEAP, DEAR}
    assert sum(summary.rows_per_model.values()) == 123
    assert all(len(r.results) == 1 and r.source == "decisions" for r in rows)
    by_prompt = {r.prompt: r for r in rows}
    assert by_prompt["first verdict one"].results[CHEAP].score == 0.0
    assert by_prompt["first verdict two"].results[CHEAP].score == 1.0
    assert by_prompt["first verdict three"].results[CHEAP].score == 0.0
    assert {r.category for r in rows} >= {"math", "chat"}
    first = rows[0]
    (model,) = first.results
    assert first.results[model].cost_usd == pytest.approx(
        json.loads(log.read_text().splitlines()[0])["attempts"][0]["cost_usd"]
    )


def test_verdict_kinds_map_to_right_and_wrong(tmp_path: Path) -> None:
    lines: list[dict[str, Any]] = []
    cases: list[tuple[str, float | None, float]] = [
        ("thumbs_up", None, 1.0),
        ("thumbs_down", None, 0.0),
        ("regenerated", None, 0.0),
    ]
    cases += [("score", 0.9, 1.0), ("score", 0.49, 0.0)]
    for i in range(20):
        kind, score, _ = cases[i % len(cases)]
        model = CHEAP if i % 2 else DEAR
        lines += [decision(f"r{i}", model, f"prompt {i}"), feedback(f"r{i}", kind, score)]
    rows, _ = load_feedback_rows([write_log(tmp_path / "log.jsonl", lines)], min_prompts=5)
    for i, row in enumerate(rows):
        (result,) = row.results.values()
        assert result.score == cases[i % len(cases)][2]


def test_partial_rows_fit_each_model_on_its_own_results(log: Path) -> None:
    rows, _ = load_feedback_rows([log])
    table = build_table(rows, {})
    assert table.models == (CHEAP, DEAR)  # cheapest first, by the logged costs
    assert np.isnan(table.scores).sum() == len(rows)  # one model's result per row
    fitted = train_partial_head(table, SMALL)
    head = fitted.head
    assert head.kind == "pair" and head.calibration == MODEL_BASED and head.cascade is None
    assert head.threshold is not None and np.isfinite(head.threshold)
    assert set(fitted.calibration) == {
        "model_based_quality_of_premium",
        "model_based_premium_share",
        "model_based_cost_fraction",
    }
    assert 0.0 <= fitted.calibration["model_based_premium_share"] <= 1.0
    maths, greeting = head.expected_scores(MATHS), head.expected_scores(GREETING)
    assert maths[1] - maths[0] > greeting[1] - greeting[0]  # the dear model matters on maths
    assert head.cost.estimate(MATHS)[1] > head.cost.estimate(MATHS)[0]
    # the numpy head is the scikit-learn pipeline, partial rows or not
    ref = fitted.sklearn_expected([MATHS, GREETING])
    assert np.allclose(ref, np.array([maths, greeting]), atol=1e-9)


async def test_train_from_the_log_and_serve_the_head(
    log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "art"
    assert main(["train", "--feedback", str(log), "--out", str(out), "--folds", "2"]) == 0
    text = capsys.readouterr().out
    assert "131 decisions, 134 feedback lines, 1 other lines" in text
    assert "123 rows with a verdict" in text
    assert "1 no prompt, 1 cached, 1 no answering model, 1 label-only feedback" in text
    assert "tiny: dropped (3 rows" in text
    assert "decisions: pair, 2 models, threshold" in text and MODEL_BASED in text
    manifest = read_manifest(out)
    assert manifest["heads"]["decisions"]["calibration"] == MODEL_BASED
    assert manifest["heads"]["decisions"]["models"] == [CHEAP, DEAR]
    fb = manifest["training_data"]["feedback"]
    assert fb["files"] == ["decisions.jsonl"] and len(fb["sha256"]) == 64
    assert fb["rows"] == 123 and fb["skipped"]["no feedback"] == 1
    assert fb["calibration"] == MODEL_BASED
    assert manifest["training_data"]["files"] == []  # no routing data with --feedback alone
    router = LearnedRouter.load(out)
    assert router.default_source == "decisions"
    scores = router.score(MATHS, "decisions")
    assert scores.models == (CHEAP, DEAR) and scores.recommended in scores.models
    # the serving path: the configured artifact and source load and classify requests
    config = parse_config(
        sim_config(classifier={"learned": {"artifact": str(out), "source": "decisions"}})
    )
    check_learned(config)
    served = learned_router(config)
    assert served is not None
    learned = LearnedClassifier(served, source="decisions")
    result = await learned.classify(RouteRequest("r", (Message(Role.USER, MATHS),)))
    assert any(s.startswith("learned:decisions:gain=") for s in result.signals)


def test_feedback_beside_routing_data_adds_a_head(
    log: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "both"
    data = str(data_dir / "pair.jsonl")
    code = main(["train", "--data", data, "--feedback", str(log), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    manifest = read_manifest(out)
    assert set(manifest["heads"]) == {"synth-pair", "decisions"}
    assert "calibration" not in manifest["heads"]["synth-pair"]  # full rows: as before
    assert manifest["heads"]["synth-pair"]["cascade"] is not None
    assert manifest["training_data"]["rows"] == 160
    router = LearnedRouter.load(out)
    assert router.head("synth-pair").calibration is None
    assert router.head("decisions").calibration == MODEL_BASED


def test_three_models_give_a_many_model_head_with_a_model_based_lambda(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "three.jsonl", judged_log(150, (CHEAP, MIDDLE, DEAR), seed=3))
    out = tmp_path / "three"
    assert main(["train", "--feedback", str(log), "--out", str(out), "--folds", "2"]) == 0
    assert "decisions: multi, 3 models, lambda" in capsys.readouterr().out
    head = LearnedRouter.load(out).head("decisions")
    assert head.models == (CHEAP, MIDDLE, DEAR) and head.lam is not None
    assert head.calibration == MODEL_BASED
    assert head.score(MATHS).recommended in head.models


def test_a_log_without_prompts_exits_2_naming_include_prompts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        line
        for i in range(30)
        for line in (decision(f"r{i}", CHEAP, None), feedback(f"r{i}", "thumbs_up"))
    ]
    log = write_log(tmp_path / "decisions.jsonl", lines)
    assert main(["train", "--feedback", str(log), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "decisions.include_prompts" in err and "none of the 30 decision lines" in err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([{"type": "shadow", "request_id": "x"}], "no decision lines"),
        (
            [
                line
                for i in range(12)
                for line in (decision(f"r{i}", CHEAP, f"p {i}"), feedback(f"r{i}", "thumbs_up"))
            ],
            "a routing head needs two or more models",
        ),
        ([{"source": "s", "prompt": "p", "results": {}}], "pass routing data with --data"),
    ],
)
def test_logs_that_cannot_train_a_head_exit_2(
    lines: list[dict[str, Any]], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "decisions.jsonl", lines)
    assert main(["train", "--feedback", str(log), "--out", str(tmp_path / "a")]) == 2
    assert message in capsys.readouterr().err


def test_feedback_needs_an_explicit_out(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (DEFAULT_ARTIFACT / "manifest.json").read_bytes()
    assert main(["train", "--feedback", str(log)]) == 2
    assert "--feedback needs --out DIR" in capsys.readouterr().err
    assert (DEFAULT_ARTIFACT / "manifest.json").read_bytes() == before


def test_a_feedback_source_name_clash_exits_2(
    log: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "--data", str(data_dir / "pair.jsonl"), "--feedback", str(log)]
    args += ["--feedback-source", "synth-pair", "--out", str(tmp_path / "a")]
    assert main(args) == 2
    assert "--feedback-source 'synth-pair' is also a source of --data" in capsys.readouterr().err


def test_eval_on_a_decision_log_exits_2_asking_for_full_rows(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "--data", str(log), "--router", str(DEFAULT_ARTIFACT)]) == 2
    err = capsys.readouterr().err
    assert "a decision log line" in err and "Evaluation needs such full rows" in err


def test_the_default_artifact_has_no_model_based_head() -> None:
    router = LearnedRouter.load(DEFAULT_ARTIFACT)
    assert all(h.calibration is None for h in router.heads.values())
    assert all("calibration" not in e for e in read_manifest(DEFAULT_ARTIFACT)["heads"].values())


def test_a_bad_line_names_the_file_and_line(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    log.write_text(json.dumps(decision("r", CHEAP, "p")) + "\n{not json\n")
    with pytest.raises(DataError, match=r"decisions\.jsonl:2: not JSON"):
        load_feedback_rows([log])


def test_a_model_whose_rows_sit_in_one_fold_is_refused(tmp_path: Path) -> None:
    lines = [
        line
        for i in range(12)
        for line in (decision(f"r{i}", CHEAP, f"prompt {i}"), feedback(f"r{i}", "thumbs_up"))
    ]
    lines += [decision("d", DEAR, "the only dear prompt"), feedback("d", "thumbs_down")]
    rows, _ = load_feedback_rows([write_log(tmp_path / "log.jsonl", lines)], min_prompts=1)
    with pytest.raises(DataError, match="rows of model 'frontier' all fall in one of the 2"):
        train_partial_head(build_table(rows, {}), SMALL)


def test_an_answered_retry_replaces_the_failure_under_its_id(tmp_path: Path) -> None:
    # A request that got no answer is logged (model "") and may be retried under the same id;
    # the answer is what the verdict after it judges, not the failure.
    lines: list[dict[str, Any]] = []
    for i in range(12):
        rid, prompt = f"r{i}", f"prompt {i}"
        model = CHEAP if i % 2 else DEAR
        if i % 3 == 0:
            failed = decision(rid, model, prompt)
            failed.update(model="", error={"code": "UNAVAILABLE", "reason": "ALL_ATTEMPTS_FAILED"})
            lines += [failed, feedback(rid, "regenerated")]  # about the failure
        lines += [decision(rid, model, prompt), feedback(rid, "thumbs_up")]
    rows, summary = load_feedback_rows([write_log(tmp_path / "log.jsonl", lines)], min_prompts=3)
    assert len(rows) == 12 and summary.duplicate_decisions == 0 and summary.no_model == 0
    assert all(next(iter(r.results.values())).score == 1.0 for r in rows)
