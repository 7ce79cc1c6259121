"""Classifiers composed: rules first, embeddings when rules are unsure, an LLM last.

* Rules always run (microseconds) and give task, difficulty and confidence.
* When rules' confidence is below ``confident_at`` — or agents are configured and the
  request named none — the embedding routes run: a task route can replace an unsure
  task, an agent route names the agent. Below the similarity threshold the result is
  "unknown": its confidence drops to :data:`UNKNOWN_CONFIDENCE` (0), below any positive
  ``routing.ambiguous_below``, so the planner moves it one tier up (``AMBIGUOUS_UP``)
  unless a later step answers with more certainty. A request whose task is already
  known with confidence (by the rules, a task route or the caller's ``hints.task``) and
  that no agent route is close to is simply no agent's: it stays as sure as it was.
* When both are unsure and an LLM classifier is configured, it is asked (with a tight
  timeout). Its answer replaces the classification; on timeout the difficulty becomes
  medium unless the earlier steps found it higher (a timeout never makes a request look
  easier; a ``timeout_difficulty:`` signal records it) and an unknown stays unknown; on a
  malformed answer or an error what the earlier steps found stands.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from quorum.server.classify.base import Classifier
from quorum.server.classify.llm import after_timeout
from quorum.server.classify.rules import RulesClassifier
from quorum.server.domain import Classification, RouteRequest

if TYPE_CHECKING:
    from quorum.server.classify.embedding import SemanticRoutes

UNKNOWN_CONFIDENCE = 0.0
"""Confidence of a request no embedding route (task or agent) is close enough to.

Below any positive ``routing.ambiguous_below`` (default 0.5), so the planner treats it as
ambiguous and picks the next more capable tier; ``ambiguous_below: 0`` turns that off.
"""


class ChainClassifier:
    """Rules → embedding routes → LLM, each only when the previous is unsure."""

    def __init__(
        self,
        *,
        rules: Classifier | None = None,
        tasks: SemanticRoutes | None = None,
        agents: SemanticRoutes | None = None,
        llm: Classifier | None = None,
        confident_at: float = 0.7,
    ) -> None:
        self._rules: Classifier = rules or RulesClassifier()
        self._tasks = tasks if tasks is not None and not tasks.empty else None
        self._agents = agents if agents is not None and not agents.empty else None
        self._llm = llm
        self._confident_at = confident_at

    def without_llm(self) -> ChainClassifier:
        """The same chain that never calls a model (for Plan, which calls none)."""
        chain = ChainClassifier(rules=self._rules, confident_at=self._confident_at)
        chain._tasks, chain._agents = self._tasks, self._agents
        return chain

    async def classify(self, request: RouteRequest) -> Classification:
        result = await self._rules.classify(request)
        want_agent = self._agents is not None and not request.hints.agent
        unsure = result.confidence < self._confident_at and not request.hints.task
        if not (unsure and self._tasks is not None) and not want_agent:
            return await self._ask_llm(request, result) if unsure else result
        text = request.prompt_text
        encoder_routes = self._tasks or self._agents
        assert encoder_routes is not None
        signals = list(result.signals)
        if unsure and self._tasks is not None:
            match = await self._tasks.match(text)
            if match.route is not None:
                result = replace(
                    result,
                    task=match.route,
                    confidence=max(result.confidence, round(match.similarity, 3)),
                    classifier="rules+embedding",
                )
                signals.append(f"semantic_task:{match.route}:{match.similarity:.2f}")
                unsure = result.confidence < self._confident_at
            else:
                # No task route is close enough: the task is unknown, so ambiguous.
                result = replace(result, confidence=min(result.confidence, UNKNOWN_CONFIDENCE))
                signals.append(f"semantic_task:unknown:{match.similarity:.2f}")
        if want_agent and self._agents is not None:
            match = await self._agents.match(text)
            if match.route is not None:
                result = replace(result, agent=match.route, classifier="rules+embedding")
                signals.append(f"agent:{match.route}:{match.similarity:.2f}")
            elif unsure:
                # No agent is close enough, and the task is unsure too: ambiguous.
                result = replace(result, confidence=min(result.confidence, UNKNOWN_CONFIDENCE))
                signals.append(f"agent:unknown:{match.similarity:.2f}")
            else:
                # The task is known with confidence: the request is no agent's.
                signals.append(f"agent:none:{match.similarity:.2f}")
        result = replace(result, signals=tuple(signals))
        if unsure:
            return await self._ask_llm(request, result)
        return result

    async def _ask_llm(self, request: RouteRequest, current: Classification) -> Classification:
        if self._llm is None:
            return current
        answer = await self._llm.classify(request)
        if answer.classifier == "llm":
            return replace(
                answer, agent=current.agent or answer.agent, signals=(*current.signals, "llm")
            )
        # The LLM timed out or answered badly: keep what we know, with its fallback note.
        if answer.classifier == "llm-timeout":
            # Medium at least, never lower than what the earlier steps found.
            difficulty, note = after_timeout(current.difficulty)
            return replace(
                current, difficulty=difficulty, signals=(*current.signals, answer.classifier, note)
            )
        return replace(current, signals=(*current.signals, answer.classifier))
