"""The rule-based classifier as a table."""

from __future__ import annotations

import pytest

from quorum.server.classify.rules import RulesClassifier, classify_text
from quorum.server.domain import Difficulty, Hints, Message, Role, RouteRequest


@pytest.mark.parametrize(
    ("prompt", "task", "difficulty"),
    [
        ("hi there", "chat", Difficulty.LOW),
        ("What is 17 * 23?", "math", Difficulty.LOW),
        ("Write a Python function that reverses a linked list", "code", Difficulty.MEDIUM),
        ("Summarize this article in three key points: ...", "summarization", Difficulty.MEDIUM),
        ("Translate 'good night' into French", "translation", Difficulty.MEDIUM),
        ("Classify the sentiment of this review: great phone", "classification", Difficulty.LOW),
        ("Write a haiku about autumn", "creative", Difficulty.MEDIUM),
        (
            "Design a distributed, fault-tolerant rate limiter and analyze the trade-offs "
            "step by step",
            "reasoning",
            Difficulty.HIGH,
        ),
        (
            "Prove rigorously that there are infinitely many primes, step by step",
            "math",
            Difficulty.HIGH,
        ),
    ],
)
def test_table(prompt: str, task: str, difficulty: Difficulty) -> None:
    result = classify_text(prompt)
    assert (result.task, result.difficulty) == (task, difficulty)
    assert 0.0 <= result.confidence <= 1.0
    assert result.classifier == "rules"


def test_long_prompt_is_harder() -> None:
    short = classify_text("Explain this.")
    long = classify_text("Explain this. " + "word " * 500)
    assert long.difficulty > short.difficulty
    assert "long_prompt" in long.signals


def test_no_signal_means_low_confidence() -> None:
    assert classify_text("ok").confidence < 0.6


async def test_task_hint_wins_with_full_confidence() -> None:
    request = RouteRequest(
        "r",
        (Message(Role.USER, "What is 2+2?"),),
        hints=Hints(task="support", agent="email_assistant"),
    )
    result = await RulesClassifier().classify(request)
    assert (result.task, result.confidence, result.agent) == ("support", 1.0, "email_assistant")


def test_huge_prompt_is_bounded() -> None:
    result = classify_text("x " * 2_000_000)
    assert result.difficulty is Difficulty.HIGH
    assert "very_long_prompt" in result.signals
