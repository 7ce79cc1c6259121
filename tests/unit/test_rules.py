"""The rule-based classifier as a table."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable

import pytest

from quorum.server.classify import rules
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


# The bullet pattern before it stopped crossing newlines: quadratic on blank lines, kept
# here to show the linear one counts exactly the same bullets.
_QUADRATIC_BULLETS = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s", re.MULTILINE)
_ADVERSARIAL = {
    "newlines": "\n" * 6000,
    "crlf": "\r\n" * 3000,
    "newline and space": "\n " * 3000,
    "nbsp and newline": "\u00a0\n" * 3000,
    "non-ascii then newlines": "é" + "\n" * 5999,
    "spaces": " " * 6000,
    "digits": "1" * 6000,
    "digits and spaces": "1 " * 3000,
    "sums": "1 + " * 1500,
    "numbered lines": "\n1." * 2000,
    "dashes": "-" * 6000,
    "punctuation": "-*•.)?`+" * 750,
    "keywords": "prove step-by-step " * 315,
    "select": "select " + "a" * 5993,
    "c++": "c++" * 2000,
}


def test_a_bullet_match_never_reaches_back_over_a_newline() -> None:
    # Structure, not timing: a match starts on the line of its marker, so each line start
    # scans only its own indent (linear); "\n\n- x" matches "- " on the third line.
    assert [m.group() for m in rules._BULLETS.finditer("\n\n- x\n \t 2) y")] == ["- ", " \t 2) "]
    assert _QUADRATIC_BULLETS.match("\n\n- x") is not None
    assert rules._BULLETS.match("\n\n- x") is None


@pytest.mark.parametrize("name", sorted(_ADVERSARIAL))
def test_adversarial_prompts_classify_in_well_under_50_ms(name: str) -> None:
    # Each took 0.5 to 1 s when the bullet pattern was quadratic; now well under 1 ms.
    text = _ADVERSARIAL[name]
    best = min(_seconds(classify_text, text) for _ in range(3))
    assert best < 0.05, f"{name}: {best * 1000:.1f} ms"


def test_bullets_count_as_the_quadratic_pattern_did() -> None:
    pieces = ["\n", "\n\n", "\r\n", "\r", " ", "\t", "\u00a0", "\u3000", "\u2028", "\x85",
              "\x0c", "-", "*", "•", "1.", "12)", "3", "- ", "* ", "• ", "1. ", "2) ", "-\n",
              "1.\r\n", "word", "٣."]  # fmt: skip
    rng = random.Random(7)
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 20))) for _ in range(20_000)]
    texts += ["\n\n- a\n\n\n  1. b\r\n\r\n\t* c\n \n• d", "\n \n \n-\n", "- a\n- b\n- c\n- d"]
    for text in texts:
        assert len(rules._BULLETS.findall(text)) == len(_QUADRATIC_BULLETS.findall(text)), text
    # Bullets after blank lines still make a prompt multi-part.
    steps = "Steps:\n\n- one\n\n- two\n\n\n- three\n\n  - four"
    assert "multi_part" in classify_text(steps).signals


def _seconds(work: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    work(*args)
    return time.perf_counter() - start
