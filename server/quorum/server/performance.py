"""Performance-based ordering of a tier's models: pure, for the planner.

Within a tier, models are ordered by their observed answer quality on the request's
task (gate passes, consensus agreement and caller feedback, from the state snapshot),
falling back to a configured prior for models not yet measured. A small share of
requests — chosen by a hash of the request id, so the planner stays pure and the
choice reproducible — explores instead: each model's quality is drawn from a Beta
distribution around its estimate (Thompson sampling), so new and drifting models get
re-measured.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from quorum.server.catalog import ModelSpec
from quorum.server.hashing import fraction
from quorum.server.state import StateSnapshot, accuracy_key
from quorum.server.values import value_type

PRIOR_STRENGTH = 10.0  # pseudo-observations behind a configured prior


@value_type
class PerformancePolicy:
    enabled: bool = True
    explore_share: float = 0.0
    min_samples: int = 20


@value_type
class Estimate:
    model: str
    quality: float
    observed: bool
    score: float


def _unit(*parts: str) -> float:
    return fraction("\x1f".join(parts))


def explores(request_id: str, share: float) -> bool:
    """Whether this request explores (deterministic in the request id)."""
    return share > 0 and _unit("explore", request_id) < share


def estimate(model: ModelSpec, task: str, snapshot: StateSnapshot) -> tuple[float, bool]:
    """Observed quality on ``task`` (gate/feedback, else votes), else the prior."""
    key = accuracy_key(model.name, task)
    for source in (snapshot.model_quality, snapshot.model_accuracy):
        if key in source:
            return source[key], True
    return model.quality_prior, False


def rank(
    models: Sequence[ModelSpec],
    task: str,
    snapshot: StateSnapshot,
    policy: PerformancePolicy,
    request_id: str,
) -> tuple[list[Estimate], bool]:
    """Estimates for ``models``, best first, and whether this request explored."""
    explore = explores(request_id, policy.explore_share)
    out: list[Estimate] = []
    for model in models:
        quality, observed = estimate(model, task, snapshot)
        score = quality
        if explore:
            strength = float(policy.min_samples) if observed else PRIOR_STRENGTH
            rng = random.Random(f"{request_id}\x1f{model.name}")
            score = rng.betavariate(1.0 + quality * strength, 1.0 + (1.0 - quality) * strength)
        out.append(Estimate(model.name, quality, observed, score))
    out.sort(key=lambda e: -e.score)
    return out, explore
