"""An LLM classifier: a cheap model asked for strict JSON, under a tight timeout.

The model is asked for ``{"task": ..., "difficulty": "low|medium|high", "confidence": 0..1}``.
On timeout the difficulty falls back to medium — never lower than the rules' own answer
(a timeout must not make a request look easier), with a ``timeout_difficulty:`` signal; on
a malformed answer or a provider error the rules' answer stands. ``classifier`` records
which of these happened.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence

from quorum.server.classify.rules import RulesClassifier
from quorum.server.domain import Classification, Difficulty, Message, Role, RouteRequest
from quorum.server.errors import ProviderError, ProviderTimeout

CallModel = Callable[[tuple[Message, ...], float], Awaitable[str]]

_DIFFICULTY = {"low": Difficulty.LOW, "medium": Difficulty.MEDIUM, "high": Difficulty.HIGH}
_MAX_PROMPT_CHARS = 2000
TIMEOUT_DIFFICULTY = Difficulty.MEDIUM
"""The least difficulty a request keeps when the classifier model does not answer in time."""

INSTRUCTIONS = (
    "You classify requests for an LLM router. Reply with one JSON object and nothing else: "
    '{{"task": one of [{tasks}], "difficulty": "low" | "medium" | "high", '
    '"confidence": a number between 0 and 1}}. '
    "low: a cheap small model answers it well; high: it needs the most capable model."
)


def parse_classification(text: str, tasks: Sequence[str]) -> Classification | None:
    """Strictly parse the model's JSON answer; ``None`` when it does not conform."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) != {"task", "difficulty", "confidence"}:
        return None
    task, difficulty, confidence = data["task"], data["difficulty"], data["confidence"]
    if not isinstance(task, str) or (tasks and task not in tasks):
        return None
    if difficulty not in _DIFFICULTY:
        return None
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        return None
    if not 0.0 <= float(confidence) <= 1.0:
        return None
    return Classification(task, _DIFFICULTY[difficulty], float(confidence), "llm")


def after_timeout(known: Difficulty) -> tuple[Difficulty, str]:
    """The difficulty after the model timed out — medium, or ``known`` when higher — and a
    signal that says so (``timeout_difficulty:low->medium``, ``timeout_difficulty:high->high``).
    """
    difficulty = max(known, TIMEOUT_DIFFICULTY)
    return difficulty, f"timeout_difficulty:{known.name.lower()}->{difficulty.name.lower()}"


class LLMClassifier:
    """Classifies with a model through ``call``; never fails the request."""

    def __init__(
        self,
        call: CallModel,
        *,
        tasks: Sequence[str],
        timeout_s: float = 0.3,
        rules: RulesClassifier | None = None,
        may_see: Callable[[RouteRequest], bool] | None = None,
    ) -> None:
        self._call = call
        self._may_see = may_see
        self._tasks = tuple(tasks)
        self._timeout_s = timeout_s
        self._rules = rules or RulesClassifier()
        self._system = INSTRUCTIONS.format(tasks=", ".join(f'"{t}"' for t in self._tasks))

    async def classify(self, request: RouteRequest) -> Classification:
        fallback = await self._rules.classify(request)
        if self._may_see is not None and not self._may_see(request):
            return fallback  # the classifier model may not read this request
        messages = (
            Message(Role.SYSTEM, self._system),
            Message(Role.USER, request.prompt_text[:_MAX_PROMPT_CHARS]),
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                text = await self._call(messages, self._timeout_s)
        except (TimeoutError, ProviderTimeout):
            # Our timer or the provider's own (given the same limit), whichever fired first.
            difficulty, note = after_timeout(fallback.difficulty)
            return Classification(
                fallback.task,
                difficulty,
                fallback.confidence,
                "llm-timeout",
                fallback.agent,
                (*fallback.signals, note),
            )
        except ProviderError:
            return Classification(
                fallback.task,
                fallback.difficulty,
                fallback.confidence,
                "llm-error",
                fallback.agent,
                fallback.signals,
            )
        parsed = parse_classification(text.strip(), self._tasks)
        if parsed is None:
            return Classification(
                fallback.task,
                fallback.difficulty,
                fallback.confidence,
                "llm-malformed",
                fallback.agent,
                fallback.signals,
            )
        return parsed
