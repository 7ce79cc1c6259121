"""Small synthetic routing data, written as JSONL the way the real files are."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

WEAK = "weak-model"
STRONG = "strong-model"
MULTI = ("tiny", "small", "large")

_MATH = ["integral", "prime", "matrix", "derivative", "polynomial", "equation"]
_HIST = ["empire", "treaty", "dynasty", "revolution", "parliament", "colony"]


def pair_rows(n: int, seed: int = 0, source: str = "synth-pair") -> list[dict[str, Any]]:
    """Two-model rows: maths prompts favour the strong model, history prompts do not."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        maths = i % 2 == 0
        words = rng.sample(_MATH if maths else _HIST, 3)
        number = rng.randint(2, 90)
        prompt = f"Question {i}: what about the {' '.join(words)} of {number}?\nA. 1\nB. 2\nAnswer:"
        strong = 1.0 if rng.random() < 0.9 else 0.0
        weak = 1.0 if rng.random() < (0.3 if maths else 0.85) else 0.0
        answer = (
            f"We compute {number} + 1 = <<{number}+1={number + 1}>>{number + 1}.\n#### {number + 1}"
        )
        if weak == 0.0 and rng.random() < 0.7:
            answer = f"We compute {number} + 1 = <<{number}+1={number + 3}>>"
        rows.append(
            {
                "id": f"{source}-{i}",
                "source": source,
                "category": "maths" if maths else "history",
                "prompt": prompt,
                "results": {
                    WEAK: {"score": weak, "response": answer},
                    STRONG: {"score": strong, "response": "#### 1"},
                },
            }
        )
    return rows


def multi_rows(n: int, seed: int = 1, source: str = "synth-multi") -> list[dict[str, Any]]:
    """Three-model rows with real costs; 'hard' prompts need the large model."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        hard = i % 3 == 0
        prompt = f"Task {i}: {'prove the theorem carefully' if hard else 'say hello politely'} now"
        p_right = (0.2, 0.4, 0.9) if hard else (0.8, 0.9, 0.95)
        rows.append(
            {
                "id": f"{source}-{i}",
                "source": source,
                "category": "hard" if hard else "easy",
                "prompt": prompt,
                "results": {
                    m: {
                        "score": 1.0 if rng.random() < p else 0.0,
                        "cost_usd": c * (1 + len(prompt) / 100),
                    }
                    for m, p, c in zip(MULTI, p_right, (0.0001, 0.0005, 0.005), strict=True)
                },
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as JSON lines to ``path``."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_prices(path: Path) -> Path:
    """A prices.json for the synthetic pair models."""
    prices = {
        WEAK: {"input_per_mtok": 0.6, "output_per_mtok": 0.6},
        STRONG: {"input_per_mtok": 10.0, "output_per_mtok": 30.0},
    }
    path.write_text(json.dumps(prices), encoding="utf-8")
    return path
