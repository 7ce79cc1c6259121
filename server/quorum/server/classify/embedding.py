"""Semantic routes: classify by nearest labelled examples in embedding space.

Each route (a task type or an agent) has example utterances; their embeddings are
computed once at start-up. A prompt is embedded and compared by cosine similarity with
every example; the top-k neighbours vote (weighted by similarity). Below the similarity
threshold the answer is "unknown", which the planner treats as ambiguous (it moves to a
more capable tier).

The encoder is all-MiniLM-L6-v2 run locally (:mod:`quorum.server.embeddings`), or a remote
OpenAI-compatible endpoint (:mod:`quorum.server.providers.embeddings_http`). A remote one
can fail for one request: it raises :class:`EmbeddingUnavailable`, and
:class:`FallbackChain` then classifies without the semantic routes, as if the embedding
step were unsure — never as "unknown", never as an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np
import numpy.typing as npt

from quorum.server.classify.base import Classifier
from quorum.server.classify.chain import ChainClassifier
from quorum.server.domain import Classification, RouteRequest
from quorum.server.values import value_type

Array = npt.NDArray[np.float32]

UNAVAILABLE_SIGNAL = "semantic:unavailable"
"""The signal of a request classified without its semantic routes (the encoder failed)."""


class EmbeddingUnavailable(Exception):
    """The encoder could not embed a text this time (a remote endpoint failed, timed out
    or is cooling down after failures). At start-up it stops the server; per request the
    embedding step has no answer, and the request goes on without it."""


class Encoder(Protocol):
    """Anything that turns texts into unit-length vectors.

    ``encode`` embeds the examples once at start-up; ``aencode`` embeds a prompt per
    request. Either may raise :class:`EmbeddingUnavailable` (a remote encoder does).
    """

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
        """The best route for ``text``; raises :class:`EmbeddingUnavailable` when the
        encoder cannot embed it this time."""
        vectors = await self._encoder.aencode([text])
        return self.match_vector(vectors[0])


class FallbackChain(ChainClassifier):
    """The classifier chain over an encoder that may fail per request (a remote one).

    When the encoder raises :class:`EmbeddingUnavailable`, the request is classified by
    the same chain without its semantic routes: the first step's answer, and the LLM
    classifier's when that is unsure (below ``confident_at``). The embedding step counts
    as unsure, not as "unknown" (which would move the request a tier up), and never
    fails the request; the signal ``semantic:unavailable`` records it. Nothing is paid
    twice: the encoder is asked before the chain reaches the LLM, so only the first step
    (rules: tens of microseconds) runs again.
    """

    def __init__(
        self,
        *,
        rules: Classifier | None = None,
        tasks: SemanticRoutes | None = None,
        agents: SemanticRoutes | None = None,
        llm: Classifier | None = None,
        confident_at: float = 0.7,
    ) -> None:
        super().__init__(
            rules=rules, tasks=tasks, agents=agents, llm=llm, confident_at=confident_at
        )
        self._routes = (tasks, agents)
        self._first = rules
        self._without = ChainClassifier(rules=rules, llm=llm, confident_at=confident_at)

    def without_llm(self) -> ChainClassifier:
        tasks, agents = self._routes
        return FallbackChain(
            rules=self._first, tasks=tasks, agents=agents, confident_at=self._confident_at
        )

    async def classify(self, request: RouteRequest) -> Classification:
        try:
            return await super().classify(request)
        except EmbeddingUnavailable:
            # The encoder logged why; the decision log shows the signal.
            result = await self._without.classify(request)
            return replace(result, signals=(*result.signals, UNAVAILABLE_SIGNAL))
