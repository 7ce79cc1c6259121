"""A small synthetic decision log, written the way ``decisions.include_prompts`` writes one.

Maths prompts: the cheap model is usually wrong, the dear one usually right; greetings: both are
usually right. The "router" that wrote the log sent most maths to the dear model and most
greetings to the cheap one, with some exploration, so each model has verdicts on both kinds.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

CHEAP, DEAR, MIDDLE = "flash", "frontier", "mid"
COSTS = {CHEAP: 0.0001, MIDDLE: 0.001, DEAR: 0.01}
_MATHS = ["integral", "derivative", "matrix", "eigenvalue", "polynomial", "prime"]
_GREET = ["hello", "thanks", "goodbye", "welcome", "cheers", "greetings"]


def decision(
    request_id: str,
    model: str,
    prompt: str | None,
    *,
    task: str = "general",
    cached: bool = False,
) -> dict[str, Any]:
    """A ``decision`` line as :func:`quorum.server.decisions.decision_record` writes it."""
    cost = 0.0 if cached else COSTS.get(model, 0.001) * (1 + len(prompt or "") / 200)
    line: dict[str, Any] = {
        "type": "decision",
        "ts": 1_700_000_000.0,
        "request_id": request_id,
        "tenant": "",
        "task": task,
        "difficulty": "low",
        "confidence": 0.8,
        "classifier": "rules",
        "agent": "",
        "strategy": "single",
        "plan": [{"role": "primary", "models": [model]}],
        "reasons": [],
        "model": model,
        "attempts": []
        if cached
        else [
            {
                "model": model,
                "role": "primary",
                "outcome": "succeeded",
                "reason": "",
                "latency_ms": 12.0,
                "cost_usd": cost,
                "gate": None,
            }
        ],
        "input_tokens": 20,
        "output_tokens": 40,
        "cost_usd": cost,
        "baseline_cost_usd": 0.01,
        "total_ms": 14.0,
        "cached": cached,
        "guards": [],
    }
    if prompt is not None:
        line["prompt"] = prompt
    return line


def feedback(
    request_id: str, kind: str, score: float | None = None, *, first: bool = True
) -> dict[str, Any]:
    """A ``feedback`` line as :meth:`quorum.server.decisions.DecisionLog.feedback` writes it."""
    line: dict[str, Any] = {"type": "feedback", "ts": 1_700_000_001.0, "request_id": request_id}
    line["kind"] = kind
    if score is not None:
        line["score"] = score
    line["first_verdict"] = first
    return line


def judged_log(
    n: int, models: tuple[str, ...] = (CHEAP, DEAR), seed: int = 0
) -> list[dict[str, Any]]:
    """``n`` decisions with prompts, each followed by one verdict, of varied kinds."""
    rng = random.Random(seed)
    lines: list[dict[str, Any]] = []
    for i in range(n):
        maths = i % 2 == 0
        words = " ".join(rng.sample(_MATHS if maths else _GREET, 3))
        prompt = (
            f"Request {i}: {'compute the' if maths else 'say'} {words} for {rng.randint(2, 99)}"
        )
        if maths:
            model = models[-1] if rng.random() < 0.7 else models[0]
        else:
            model = models[0] if rng.random() < 0.7 else rng.choice(models[1:])
        p_right = {CHEAP: 0.2, MIDDLE: 0.5, DEAR: 0.9}[model] if maths else 0.9
        right = rng.random() < p_right
        rid = f"req-{i}"
        lines.append(decision(rid, model, prompt, task="math" if maths else "chat"))
        kind = rng.choice(["thumbs", "score", "regenerated"])
        if kind == "thumbs":
            lines.append(feedback(rid, "thumbs_up" if right else "thumbs_down"))
        elif kind == "score":
            lines.append(feedback(rid, "score", 0.8 if right else 0.2))
        elif right:
            lines.append(feedback(rid, "thumbs_up"))
        else:
            lines.append(feedback(rid, "regenerated"))
    return lines


def write_log(path: Path, lines: list[dict[str, Any]]) -> Path:
    """Write ``lines`` as JSON lines to ``path``."""
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path
