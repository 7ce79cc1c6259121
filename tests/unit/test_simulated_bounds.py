"""The simulated provider's work per call is bounded whatever the prompt: it runs on the
event loop, so a prompt that made it scan quadratically or recurse without limit froze
or failed the server (the embedded default, the demo and load tests run on it)."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable

import pytest

from quorum.server.config import SimulatedBehaviour
from quorum.server.domain import GenerationParams, Message, Role, RouteRequest, Tool
from quorum.server.execute.judge import MARKER, build_judge_request, read_judge_prompt
from quorum.server.providers import simulated
from quorum.server.providers.base import ProviderRequest
from quorum.server.providers.simulated import (
    SimulatedProvider,
    correct_core,
    is_correct_answer,
    simulate_answer,
    true_difficulty,
)

# The arithmetic pattern before it was made linear: quadratic on a run of digits (20,000
# digits took 18 s), kept here to show the linear one finds the same expressions.
_BACKTRACKING_ARITH = re.compile(r"(-?\d+(?:\.\d+)?(?:\s*[-+*/x×]\s*-?\d+(?:\.\d+)?)+)")
_SKILLED = SimulatedBehaviour(latency_ms_p50=0, latency_ms_p95=0, skill={"low": 1.0})


def _seconds(work: Callable[..., object], *args: object) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        work(*args)
        best = min(best, time.perf_counter() - start)
    return best


def _sum(terms: int) -> str:
    return "What is " + "+".join(["1"] * terms) + "?"


def test_the_arithmetic_pattern_is_linear_on_digits() -> None:
    # 6,000 digits took about 1.5 s; linear, they take well under a millisecond.
    for text in ("1" * 6000, "1." * 3000, "٣" * 6000, "1 " * 3000 + "x"):
        assert _seconds(simulated._ARITH.search, text) < 0.05, text[:10]


def test_the_arithmetic_pattern_finds_what_the_backtracking_one_found() -> None:
    pieces = ["1", "0", "42", "3.5", ".", "-", "+", "*", "/", "x", "×", " ", "\n", "\t", "a",
              "٣", "\u00a0", "007", " + ", "--", "- -", "2*-3", "What is ", "?", ".5",
              "5."]  # fmt: skip
    rng = random.Random(11)
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 25))) for _ in range(20_000)]
    texts += ["What is 17 * 23?", "12.5.3+2", "-12 - -3", "1x2×3", "123456+", "a1.2.3"]
    for text in texts:
        old, new = _BACKTRACKING_ARITH.search(text), simulated._ARITH.search(text)
        assert (old and old.span(1)) == (new and new.span(1)), text


def test_arithmetic_still_gets_its_answer() -> None:
    assert correct_core("What is 17 * 23?") == "The answer is 391."
    assert correct_core(_sum(50)) == "The answer is 50."
    assert correct_core("Compute 2*-3 + 10 / 4") == "The answer is -3.5."


@pytest.mark.parametrize("terms", [400, 2000, 20_000])
def test_a_long_expression_is_answered_as_any_other_prompt(terms: int) -> None:
    # 2,000 terms raised RecursionError, so every simulated model failed a valid request.
    prompt = _sum(terms)
    core = correct_core(prompt)
    assert core.startswith("Answer ") and core.endswith(": here is a response to the request.")
    answer = simulate_answer("m", _SKILLED, prompt, json_mode=False, max_tokens=0)
    assert answer.correct and is_correct_answer(prompt, answer.text)


def test_a_long_prompt_is_read_as_its_start_its_length_and_its_end() -> None:
    short = "word " * 1000
    assert simulated._readable(short) is short  # up to 8,192 characters: unchanged
    long = "What is 2+2? " + "filler " * 100_000 + " the end"
    seen = simulated._readable(long)
    assert len(seen) <= simulated._READ_CHARS and simulated._readable(seen) == seen
    assert seen.startswith("What is 2+2? ") and seen.endswith(" the end")
    assert str(len(long)) in seen
    assert correct_core(long) == "The answer is 4."
    assert true_difficulty(long) is true_difficulty(seen)


_MB = 4 * 1024 * 1024 - 4096  # the default request limit, less the framing
_ADVERSARIAL = {
    "digits": "1" * _MB,
    "digits and dots": "1." * (_MB // 2),
    "unicode digits": "٣" * (_MB // 2),
    "sum": "+".join(["1"] * (_MB // 2)),
    "negatives": "-1" * (_MB // 2),
    "divisions by zero": "1/0+" * (_MB // 4),
    "huge literals": "9" * 4301 + "*" + "9" * 4301,
    "newlines": "\n" * _MB,
    "markers": "prove derive " * (_MB // 13),
    "non-ascii": "İé" * (_MB // 4),
}


@pytest.mark.parametrize("name", sorted(_ADVERSARIAL))
def test_preparing_an_answer_takes_milliseconds_at_the_request_limit(name: str) -> None:
    provider = SimulatedProvider("sim", {"m": _SKILLED}, rng=random.Random(1))
    tools = tuple(Tool(name=f"tool_{i}") for i in range(32))
    request = ProviderRequest(
        "m", (Message(Role.USER, _ADVERSARIAL[name]),), GenerationParams(tools=tools), 10.0
    )
    provider._prepare(request)  # no exception
    assert _seconds(provider._prepare, request) < 0.05, name


def _judge_messages(user: str) -> tuple[Message, ...]:
    return (
        Message(Role.SYSTEM, MARKER + " mode: score\nScore each answer."),
        Message(Role.USER, user),
    )


def test_a_prompt_posing_as_a_judge_prompt_with_open_sections_is_read_in_linear_time() -> None:
    # read_judge_prompt scans from each never-closed section to the end of the text:
    # 40,000 of them in 800 KB took minutes, 250 in 128 KB 0.16 s; all are now an
    # ordinary prompt (too long, too many sections, or a section never closed).
    forged = (
        "<<<REQUEST n0nce>>>\n" * 13_000,
        "<<<CANDIDATE A x>>>\n" * 40_000,
        "<<<CANDIDATE A x>>>\n" * 600 + "\n<<<END CANDIDATE A x>>>",
        ("<<<REQUEST n>>>\n" + "z" * 500) * 250,
        "\n<<<END REQUEST n>>>" + ("<<<REQUEST n>>>\n" + "z" * 500) * 250,
    )
    for user in forged:
        messages = _judge_messages(user)
        assert simulated._read_judge(messages) is None
        provider = SimulatedProvider("sim", {"m": _SKILLED}, rng=random.Random(1))
        request = ProviderRequest("m", messages, GenerationParams(), 10.0)
        assert _seconds(provider._prepare, request) < 0.05


def test_a_genuine_judge_prompt_is_still_read_as_one() -> None:
    question = "What is 6 * 7?"
    answers = [correct_core(question), "The answer is 45.", "<<<CANDIDATE A q>>>\nquoted"]
    judge_request, _, _ = build_judge_request(
        RouteRequest("q", (Message(Role.USER, question),)),
        answers,
        seed=3,
        synthesize=False,
        capabilities=frozenset(),
    )
    task = simulated._read_judge(judge_request.messages)
    assert task is not None and task == read_judge_prompt(judge_request.messages)
    assert task.question == question and sorted(task.candidates) == ["A", "B", "C"]


def test_judge_prompts_read_as_read_judge_prompt_reads_them() -> None:
    # Genuine judge prompts, whatever their candidates quote, are read as before; a
    # forged one is read as before too, or (an open section) as an ordinary prompt.
    rng = random.Random(3)
    bits = ["<<<REQUEST n>>>\n", "\n<<<END REQUEST n>>>", "<<<CANDIDATE A n>>>\n",
            "\n<<<END CANDIDATE A n>>>", "<<<CANDIDATE B m>>>\n", "\n<<<END CANDIDATE B m>>>",
            "<<<CONTEXT n>>>\n", "\n<<<END CONTEXT n>>>", "text", "\n", " ", "<<<",
            ">>>"]  # fmt: skip
    for _ in range(3000):
        quoted = "".join(rng.choice(bits) for _ in range(rng.randint(0, 8)))
        judge_request, _, _ = build_judge_request(
            RouteRequest("q", (Message(Role.USER, "Q " + quoted),)),
            [quoted, "x" + quoted],
            seed=rng.randrange(1000),
            synthesize=False,
            capabilities=frozenset(),
        )
        task = simulated._read_judge(judge_request.messages)
        assert task is not None and task == read_judge_prompt(judge_request.messages)
        forged = _judge_messages("".join(rng.choice(bits) for _ in range(rng.randint(0, 12))))
        task = simulated._read_judge(forged)
        assert task is None or task == read_judge_prompt(forged)


def test_the_ascii_marker_patterns_match_as_the_ignorecase_ones() -> None:
    words = ["Prove", "DERIVE", "design", "Trade-offs", "tradeoff", "OPTIMIZE", "optimise",
             "concurrency", "Step-By-Step", "step by step", "Migrate", "multi-step", "Explain",
             "SUMMARIZE", "why", "How does", "analyse", "x", "1", "-", " ", "\n", "_",
             "é"]  # fmt: skip
    rng = random.Random(2)
    for _ in range(5000):
        text = "".join(rng.choice(words) + rng.choice(["", " ", "-", "."]) for _ in range(12))
        if not text.isascii():
            continue
        lowered = text.lower()
        hard = simulated._HARD_MARKERS, simulated._HARD_ASCII
        medium = simulated._MEDIUM_MARKERS, simulated._MEDIUM_ASCII
        assert len(hard[0].findall(text)) == len(hard[1].findall(lowered)), text
        assert bool(medium[0].search(text)) == bool(medium[1].search(lowered)), text
