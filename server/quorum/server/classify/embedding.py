"""Semantic routes: classify by nearest labelled examples in embedding space.

Each route (a task type or an agent) has example utterances; their embeddings are
computed once at start-up. A prompt is embedded and compared by cosine similarity with
every example; the top-k neighbours vote (weighted by similarity). Below the similarity
threshold the answer is "unknown", which the planner treats as ambiguous (it moves to a
more capable tier).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from quorum.server.values import value_type

Array = npt.NDArray[np.float32]


class Encoder(Protocol):
    """Anything that turns texts into unit-length vectors."""

    async def aencode(self, texts: Sequence[str]) -> Array: ...

    def encode(self, texts: Sequence[str]) -> Array: ...


@value_type
class RouteMatch:
    """The best route for a text, or ``None`` below the threshold."""

    route: str | None
    similarity: float
    runner_up: str | None


class SemanticRoutes:
    """k-nearest-neighbour routing over labelled example utterances."""

    def __init__(
        self,
        encoder: Encoder,
        routes: Mapping[str, Sequence[str]],
        *,
        threshold: float = 0.45,
        k: int = 5,
    ) -> None:
        self._encoder = encoder
        self._threshold = threshold
        self._k = k
        labels: list[str] = []
        texts: list[str] = []
        for name, examples in routes.items():
            for example in examples:
                labels.append(name)
                texts.append(example)
        self._labels = labels
        self._matrix: Array = (
            encoder.encode(texts) if texts else np.zeros((0, 384), dtype=np.float32)
        )

    @property
    def empty(self) -> bool:
        return not self._labels

    def match_vector(self, vector: Array) -> RouteMatch:
        """Vote among the k nearest examples of ``vector``."""
        if self.empty:
            return RouteMatch(None, 0.0, None)
        sims = self._matrix @ vector
        top = np.argsort(-sims)[: self._k]
        votes: dict[str, float] = {}
        best_sim: dict[str, float] = {}
        for i in top:
            label, sim = self._labels[int(i)], float(sims[int(i)])
            if sim <= 0:
                continue
            votes[label] = votes.get(label, 0.0) + sim
            best_sim[label] = max(best_sim.get(label, 0.0), sim)
        if not votes:
            return RouteMatch(None, 0.0, None)
        ranked = sorted(votes, key=lambda name: votes[name], reverse=True)
        winner = ranked[0]
        runner = ranked[1] if len(ranked) > 1 else None
        similarity = best_sim[winner]
        if similarity < self._threshold:
            return RouteMatch(None, similarity, winner)
        return RouteMatch(winner, similarity, runner)

    async def match(self, text: str) -> RouteMatch:
        vectors = await self._encoder.aencode([text])
        return self.match_vector(vectors[0])
