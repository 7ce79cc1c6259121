"""The decision log's feedback as *partial* training rows (``quorum router train --feedback``).

The decision log (:mod:`quorum.server.decisions`) writes one ``decision`` line per routed request
(with the prompt only when ``decisions.include_prompts`` is on) and a ``feedback`` line for each
outcome reported later, keyed by ``request_id``. Joined, a decision with a verdict says whether
the model that answered was right — one model's result on the prompt, not every model's:

* the verdict is the request's first feedback that is one: ``thumbs_up`` or a ``score`` of at
  least 0.5 → right (1.0); ``thumbs_down``, ``regenerated`` or a ``score`` below 0.5 → wrong (0.0)
  (:func:`quorum.server.decisions.feedback_is_good`). Where several lines are verdicts, one the
  server marked ``first_verdict`` wins over one it marked ``first_verdict: false`` (logs of several
  replicas concatenated), then the earlier line;
* skipped, and counted in :class:`FeedbackSummary`: decisions without a prompt, cached answers
  (``cached: true``: no model answered), decisions without an answering model, decisions with
  only ``label`` feedback, decisions without feedback, and feedback for a request the log has no
  decision for;
* each kept decision becomes a :class:`~.data.RoutingRow` of one source (``decisions`` by default)
  with the answering model's score, its cost (the answering attempt's ``cost_usd``, else the
  decision's) and the decision's task as category. A model with fewer than ``min_prompts``
  distinct prompts with a verdict is dropped with its rows (too few to fit anything).

The rows are biased: the router chose which model answered each prompt, so a model's verdicts
come from the prompts it was sent. :func:`~.training.train_partial_head` says how they are used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, get_args

from quorum.server.decisions import Feedback, FeedbackKind, feedback_is_good
from quorum.server.learned.data import (
    DataError,
    ModelResult,
    RoutingRow,
    finite_float,
    json_object,
    read_lines,
)

DEFAULT_FEEDBACK_SOURCE = "decisions"
"""Source name of the rows made from a decision log."""

MIN_MODEL_PROMPTS = 10
"""Fewest distinct prompts with a verdict for a model to be kept."""

_KINDS = frozenset(get_args(FeedbackKind))


@dataclass
class FeedbackSummary:
    """What became of the decision log's lines; :meth:`lines` is what ``train`` prints."""

    files: list[str] = field(default_factory=list)
    decisions: int = 0
    feedback_lines: int = 0
    other_lines: int = 0
    rows: int = 0
    no_prompt: int = 0
    cached: int = 0
    no_model: int = 0
    label_only: int = 0
    no_feedback: int = 0
    orphan_feedback: int = 0
    duplicate_decisions: int = 0
    rows_per_model: dict[str, int] = field(default_factory=dict)
    right_per_model: dict[str, int] = field(default_factory=dict)
    dropped_models: dict[str, int] = field(default_factory=dict)

    @property
    def skipped(self) -> dict[str, int]:
        """Decisions (or feedback lines) left out, by reason."""
        return {
            "no prompt": self.no_prompt,
            "cached": self.cached,
            "no answering model": self.no_model,
            "label-only feedback": self.label_only,
            "no feedback": self.no_feedback,
            "duplicate request_id": self.duplicate_decisions,
            "rows of a model with too few prompts": sum(self.dropped_models.values()),
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the artifact's manifest."""
        return {
            "decisions": self.decisions,
            "feedback_lines": self.feedback_lines,
            "rows": self.rows,
            "skipped": self.skipped,
            "orphan_feedback": self.orphan_feedback,
            "rows_per_model": dict(self.rows_per_model),
            "right_per_model": dict(self.right_per_model),
            "dropped_models": dict(self.dropped_models),
        }

    def lines(self) -> list[str]:
        """Human-readable summary."""
        out = [
            f"decision log {', '.join(self.files)}: {self.decisions} decisions, "
            f"{self.feedback_lines} feedback lines, {self.other_lines} other lines"
        ]
        out.append(f"  {self.rows} rows with a verdict (one model's result each)")
        skipped = {k: v for k, v in self.skipped.items() if v}
        if skipped:
            out.append("  skipped: " + ", ".join(f"{v} {k}" for k, v in skipped.items()))
        if self.orphan_feedback:
            out.append(
                f"  ignored: {self.orphan_feedback} feedback line(s) for requests with no decision"
            )
        for model, n in self.rows_per_model.items():
            right = self.right_per_model.get(model, 0)
            out.append(f"  {model}: {n} rows, {right} right ({right / n:.0%})")
        for model, n in self.dropped_models.items():
            out.append(f"  {model}: dropped ({n} rows, fewer than {MIN_MODEL_PROMPTS} prompts)")
        return out


@dataclass
class _Verdict:
    order: int
    marked_later: bool  # the server said first_verdict: false
    good: bool | None


def verdict_of(line: Mapping[str, Any]) -> bool | None:
    """Right (True), wrong (False) or no verdict (None: a label, an unknown kind)."""
    kind = line.get("kind")
    if kind not in _KINDS:
        return None
    fb = Feedback(
        request_id=str(line.get("request_id", "")),
        kind=cast(FeedbackKind, kind),
        score=finite_float(line.get("score")),  # None for one too large for a float
    )
    return feedback_is_good(fb)


def _answer_cost(decision: Mapping[str, Any], model: str) -> float | None:
    """The answering attempt's cost, else the decision's, else None (priced from prices.json)."""
    attempts = decision.get("attempts")
    if isinstance(attempts, list):
        for attempt in reversed(attempts):
            if (
                isinstance(attempt, dict)
                and attempt.get("model") == model
                and attempt.get("outcome") == "succeeded"
                and finite_float(attempt.get("cost_usd")) is not None
            ):
                return finite_float(attempt["cost_usd"])
    # None (priced instead) for what is not a finite number, e.g. an int of 400 digits
    return finite_float(decision.get("cost_usd"))


# A decision is its tenant's and request id's (two tenants may use one id); a feedback line
# written before feedback lines named the tenant has None there and joins on the id alone.
_Key = tuple[str | None, str]


def _read(
    paths: Iterable[Path], summary: FeedbackSummary
) -> tuple[dict[_Key, dict[str, Any]], dict[_Key, list[_Verdict]]]:
    decisions: dict[_Key, dict[str, Any]] = {}
    feedback: dict[_Key, list[_Verdict]] = {}
    order = 0
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: no such file")
        summary.files.append(p.name)
        for number, text in read_lines(p):  # DataError naming the line if not UTF-8
            if not text.strip():
                continue
            where = f"{p.name}:{number}"
            line = json_object(text, where, "a decision log line")
            kind = line.get("type")
            if kind not in ("decision", "feedback") and "results" in line:
                raise DataError(
                    f"{where}: a routing data row, not a decision log line; "
                    "pass routing data with --data"
                )
            request_id = line.get("request_id")
            tenant = line.get("tenant")
            if kind == "decision" and isinstance(request_id, str):
                summary.decisions += 1
                key: _Key = (str(tenant or ""), request_id)
                earlier = decisions.get(key)
                if earlier is None or (not earlier.get("model") and line.get("model")):
                    # The first decision under an id, or an answered retry of one that got
                    # no answer (the server's own index keeps the latest the same way):
                    # feedback read so far was about the failure, which teaches nothing.
                    decisions[key] = line
                    if earlier is not None:
                        feedback.pop(key, None)
                        feedback.pop((None, request_id), None)
                else:
                    summary.duplicate_decisions += 1
            elif kind == "feedback" and isinstance(request_id, str):
                summary.feedback_lines += 1
                order += 1
                later = line.get("first_verdict") is False
                key = (str(tenant) if isinstance(tenant, str) else None, request_id)
                feedback.setdefault(key, []).append(_Verdict(order, later, verdict_of(line)))
            else:
                summary.other_lines += 1  # shadow lines and anything else
    return decisions, feedback


def load_feedback_rows(
    paths: Iterable[Path | str],
    source: str = DEFAULT_FEEDBACK_SOURCE,
    min_prompts: int = MIN_MODEL_PROMPTS,
) -> tuple[list[RoutingRow], FeedbackSummary]:
    """Rows of ``source`` from decision logs joined with their feedback, and the summary.

    Raises :class:`DataError` when the files hold no decision lines, when no decision carries a
    prompt (``decisions.include_prompts`` was off), or when fewer than two models keep enough
    rows to route between.
    """
    summary = FeedbackSummary()
    decisions, feedback = _read([Path(x) for x in paths], summary)
    names = ", ".join(summary.files)
    if not decisions:
        raise DataError(f"{names}: no decision lines (not a decision log of quorum serve)")
    rows: list[RoutingRow] = []
    for (tenant, request_id), d in decisions.items():
        prompt = d.get("prompt")
        model = d.get("model")
        verdicts = feedback.pop((tenant, request_id), []) + feedback.pop((None, request_id), [])
        if not isinstance(prompt, str) or not prompt.strip():
            summary.no_prompt += 1
            continue
        if d.get("cached") is True:
            summary.cached += 1
            continue
        if not isinstance(model, str) or not model:
            summary.no_model += 1
            continue
        judged = [v for v in verdicts if v.good is not None]
        if not judged:
            if verdicts:
                summary.label_only += 1
            else:
                summary.no_feedback += 1
            continue
        first = min(judged, key=lambda v: (v.marked_later, v.order))
        score = 1.0 if first.good else 0.0
        rows.append(
            RoutingRow(
                id=hashlib.sha256(f"{source}\n{prompt}".encode()).hexdigest()[:16],
                source=source,
                category=str(d.get("task") or ""),
                prompt=prompt,
                results={model: ModelResult(score=score, cost_usd=_answer_cost(d, model))},
            )
        )
    summary.orphan_feedback = sum(len(v) for v in feedback.values())
    if summary.no_prompt == len(decisions):
        raise DataError(
            f"{names}: none of the {len(decisions)} decision lines carries a prompt; the log was "
            "written with decisions.include_prompts off. Turn decisions.include_prompts on, "
            "collect feedback, then train from the new log"
        )
    prompts: dict[str, set[str]] = {}
    for row in rows:
        for model in row.results:
            prompts.setdefault(model, set()).add(row.id)
    kept = {m for m, ids in prompts.items() if len(ids) >= min_prompts}
    for model in sorted(set(prompts) - kept):
        summary.dropped_models[model] = sum(1 for r in rows if model in r.results)
    rows = [r for r in rows if set(r.results) <= kept]
    for row in rows:
        for model, result in row.results.items():
            summary.rows_per_model[model] = summary.rows_per_model.get(model, 0) + 1
            summary.right_per_model[model] = summary.right_per_model.get(model, 0) + int(
                result.score >= 0.5
            )
    summary.rows_per_model = dict(sorted(summary.rows_per_model.items()))
    summary.right_per_model = dict(sorted(summary.right_per_model.items()))
    summary.rows = len(rows)
    if len(kept) < 2:
        detail = "; ".join(summary.lines())
        raise DataError(
            f"{names}: feedback covers {len(kept)} model(s) with at least {min_prompts} prompts "
            f"each; a routing head needs two or more models to choose between ({detail})"
        )
    return rows, summary
