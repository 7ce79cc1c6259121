"""A simulated provider: named models with latency, failures, quality and prices from config.

It powers the embedded default (no API keys), the demo and load tests. Behaviour is
deterministic where it matters for routing and reproducible where it should vary:

* Whether a model answers a prompt *correctly* is a fixed function of (model, prompt)
  and the model's ``skill`` at the prompt's difficulty, so a retry of the same model gives
  the same verdict and a consensus of different models can really disagree.
* Correct answers to one prompt are identical across models (arithmetic is computed;
  other prompts get a canonical answer derived from the prompt), so votes can agree.
* A wrong answer is a refusal/hedge (which a quality gate catches) for a share
  ``refusal_share`` of cases, otherwise a plausible but wrong answer (which only a vote
  or judge catches).
* Latency is log-normal with the configured p50/p95 plus a per-token time; failures are
  random at ``failure_rate`` and look like an upstream 503.
* As a real model, it stops at the request's ``max_tokens``: a longer answer is cut to
  fit (by :func:`~quorum.server.tokens.count_tokens`, as its usage is counted) with
  finish reason ``length``, unary or streamed. A tool call that does not fit is cut
  before its arguments, which then read ``{}`` as the OpenAI adapter reads them.

The simulator keeps its own notion of difficulty (:func:`true_difficulty`), separate from
Quorum's classifiers, so routing quality is measured rather than assumed.

Its work per call is bounded whatever the caller sends (a request may be megabytes, and
all of it runs on the event loop): it reads a prompt of up to 8,192 characters whole, a
longer one as its first and last 4,080 characters and its length (:func:`_readable`); it
evaluates an arithmetic expression of up to 500 characters (a longer one is answered as
any other prompt); and it reads a judge prompt (below) of up to 131,072 characters, with
at most 512 section marks, in which every section it reads is closed (anything else is
answered as an ordinary prompt).

Two additions serve consensus and benchmarks:

* :func:`is_correct_answer` tells whether a text carries the canonical correct answer to
  a prompt, so a benchmark can score any final answer (a vote's, a judge's synthesis).
* A simulated model asked with the consensus judge's prompt (see
  :mod:`quorum.server.execute.judge`) acts as the judge: it replies with valid scores
  JSON, scoring each candidate high when it carries the correct answer to the embedded
  question and low otherwise. Its own ``skill`` at the question's difficulty is the
  chance it judges a candidate right; otherwise it judges that candidate the wrong way.
  In synthesis mode its ``answer`` is the text of the candidate it scored best.
"""

from __future__ import annotations

import ast
import asyncio
import bisect
import hashlib
import json
import math
import operator
import random
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import cast

from quorum.server.config import DifficultyName, SimulatedBehaviour
from quorum.server.domain import (
    Completion,
    Difficulty,
    Message,
    ResponseFormatType,
    Role,
    ToolCall,
    ToolChoiceMode,
    Usage,
)
from quorum.server.errors import ProviderRejected, ProviderTimeout, ProviderUnavailable
from quorum.server.execute.judge import MARKER, JudgeTask, read_judge_prompt
from quorum.server.hashing import fraction
from quorum.server.providers.base import ProviderRequest, StreamDelta
from quorum.server.tokens import count_tokens, prompt_tokens
from quorum.server.values import value_type

REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "I'm not able to answer that with confidence.",
    "I cannot provide a reliable answer to this question.",
)
_HARD_MARKERS = re.compile(
    r"\b(prove|proof|derive|design|architect|trade-?offs?|optimi[sz]e|distributed|"
    r"concurren|step[- ]by[- ]step|rigorous|theorem|complexity|multi-step|migrat)",
    re.IGNORECASE,
)
_MEDIUM_MARKERS = re.compile(
    r"\b(explain|summari[sz]e|compare|write|function|implement|translate|extract|"
    r"analy[sz]e|debug|refactor|why|how does)",
    re.IGNORECASE,
)
# The same, case-sensitive, for lower-cased ASCII text: they find the same matches there,
# in a third of the time (IGNORECASE is slow in ``re``).
_HARD_ASCII = re.compile(_HARD_MARKERS.pattern)
_MEDIUM_ASCII = re.compile(_MEDIUM_MARKERS.pattern)
# A number, then one or more operator-number pairs. Linear: a match starts only where a
# number does (never inside a run of digits: it would end where the run's own match does),
# and the possessive ``++``/``*+`` never give back digits or spaces, as no shorter run of
# them could be followed by what comes next. It finds what the backtracking
# ``-?\d+(?:\.\d+)?(?:\s*[-+*/x×]\s*-?\d+(?:\.\d+)?)+`` found, which took quadratic
# time on a run of digits (tests/unit/test_simulated_bounds.py compares them).
_ARITH = re.compile(r"(-?(?<!\d)\d++(?:\.\d++)?(?:\s*+[-+*/x×]\s*+-?\d++(?:\.\d++)?)+)")
_READ_CHARS = 8_192  # a longer prompt is read as its start, its length and its end
_MAX_ARITH_CHARS = 500  # a longer expression is not evaluated (its parse tree is deep)
_MAX_JUDGE_CHARS = 131_072  # a longer "judge prompt" is answered as an ordinary prompt
_MAX_JUDGE_MARKS = 512  # ...and so is one with more "<<<" (a genuine one has a few dozen)
# A section of a judge prompt opens and closes as in quorum.server.execute.judge._SECTION.
_JUDGE_OPEN = re.compile(r"<<<(REQUEST|CONTEXT|CANDIDATE [A-P]) (\w+)>>>\n")
_JUDGE_CLOSE = re.compile(r"\n<<<END (REQUEST|CONTEXT|CANDIDATE [A-P]) (\w+)>>>")
_OPS: Mapping[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_FILLER = (
    "This follows from the details given in the request.",
    "The key points are covered above in order of importance.",
    "Each step builds on the previous one.",
    "Edge cases were considered and do not change the result.",
    "The reasoning is summarised briefly for clarity.",
)


def _readable(prompt: str) -> str:
    """``prompt`` as the simulator reads it: whole up to ``_READ_CHARS`` characters, else
    its start, its length and its end (at most ``_READ_CHARS`` characters in all, so
    reading twice changes nothing). Prompts that differ only in the middle of their
    text are then one prompt to the simulator: the same verdicts and answers."""
    if len(prompt) <= _READ_CHARS:
        return prompt
    keep = _READ_CHARS // 2 - 16
    return f"{prompt[:keep]}\x00{len(prompt)}\x00{prompt[-keep:]}"


def true_difficulty(prompt: str) -> Difficulty:
    """The simulator's own view of how hard a prompt is."""
    prompt = _readable(prompt)
    words = len(prompt.split())
    text, hard_markers, medium_markers = (
        (prompt.lower(), _HARD_ASCII, _MEDIUM_ASCII)
        if prompt.isascii()
        else (prompt, _HARD_MARKERS, _MEDIUM_MARKERS)
    )
    hard = len(hard_markers.findall(text))
    if hard >= 2 or (hard and words > 40) or words > 250:
        return Difficulty.HIGH
    if hard or medium_markers.search(text) or "```" in prompt or words > 60:
        return Difficulty.MEDIUM
    return Difficulty.LOW


def _unit(*parts: str) -> float:
    return fraction("\x1f".join(parts))


def _arith_value(prompt: str) -> float | None:
    """The value of the first arithmetic expression in ``prompt``, if it has one."""
    match = _ARITH.search(_readable(prompt))
    return _eval_arith(match.group(1)) if match else None


def _eval_arith(expression: str) -> float | None:
    # Bounded: the parse tree (and ``walk``) nests one level per operator.
    if len(expression) > _MAX_ARITH_CHARS:
        return None
    try:
        tree = ast.parse(expression.replace("×", "*").replace("x", "*"), mode="eval")
    except (SyntaxError, RecursionError):
        return None

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError("unsupported")

    try:
        value = walk(tree)
    except (ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None
    return value if math.isfinite(value) else None


def _format_number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.4g}"


@value_type
class SimulatedAnswer:
    """What a simulated model says, and whether it is right (for benchmarks)."""

    text: str
    correct: bool
    refusal: bool
    mean_logprob: float


def correct_core(prompt: str) -> str:
    """The canonical correct answer to ``prompt``, before length and format shaping."""
    prompt = _readable(prompt)
    value = _arith_value(prompt)
    if value is not None:
        return f"The answer is {_format_number(value)}."
    key = hashlib.blake2b(prompt.encode(), digest_size=3).hexdigest()
    return f"Answer {key}: here is a response to the request."


def is_correct_answer(prompt: str, text: str) -> bool:
    """Whether ``text`` carries the correct answer to ``prompt`` (for benchmarks and judges)."""
    return bool(text) and correct_core(prompt) in text


def simulate_judge(model: str, behaviour: SimulatedBehaviour, task: JudgeTask) -> SimulatedAnswer:
    """A simulated judge's scores JSON for ``task`` (see the module docstring)."""
    question = _readable(task.question)
    level = cast(DifficultyName, true_difficulty(question).name.lower())
    skill = behaviour.skill.get(level, 0.8)
    scores: dict[str, float] = {}
    good: list[str] = []
    right = correct_core(question)
    for label, text in sorted(task.candidates.items()):
        truth = bool(text) and right in text  # is_correct_answer(question, text)
        seen = _readable(text)
        judged = truth if _unit("judge", model, question, seen) < skill else not truth
        jitter = _unit("score", model, question, seen) * 0.1
        scores[label] = round(0.85 + jitter if judged else 0.05 + jitter, 3)
        if judged:
            good.append(label)
    best = max(sorted(scores), key=lambda label: scores[label]) if scores else ""
    rationale = (
        f"{', '.join(good)} give{'s' if len(good) == 1 else ''} the expected result."
        if good
        else "No candidate gives the expected result."
    )
    reply: dict[str, object] = {"scores": scores, "best": best, "rationale": rationale}
    if task.synthesize:
        reply["answer"] = task.candidates.get(best, "")
    return SimulatedAnswer(json.dumps(reply), bool(good), False, -0.1)


def simulate_answer(
    model: str, behaviour: SimulatedBehaviour, prompt: str, json_mode: bool, max_tokens: int
) -> SimulatedAnswer:
    """The deterministic answer of ``model`` to ``prompt``."""
    prompt = _readable(prompt)
    difficulty = true_difficulty(prompt)
    level = cast(DifficultyName, difficulty.name.lower())
    skill = behaviour.skill.get(level, 0.8)
    correct = _unit("correct", model, prompt) < skill
    value = _arith_value(prompt)
    key = hashlib.blake2b(prompt.encode(), digest_size=3).hexdigest()
    if correct:
        core = (
            f"The answer is {_format_number(value)}."
            if value is not None
            else (f"Answer {key}: here is a response to the request.")
        )
        return SimulatedAnswer(
            _shape(core, prompt, difficulty, behaviour, json_mode, max_tokens), True, False, -0.08
        )
    if _unit("refuse", model, prompt) < behaviour.refusal_share:
        text = REFUSALS[int(_unit("which", model, prompt) * len(REFUSALS))]
        if json_mode:
            text = json.dumps({"answer": None, "error": text})
        return SimulatedAnswer(text, False, True, -1.6)
    wrong_key = hashlib.blake2b(f"{model}:{prompt}".encode(), digest_size=3).hexdigest()
    offset = 1 + int(_unit("offset", model, prompt) * 9)
    core = (
        f"The answer is {_format_number(value + offset)}."
        if value is not None
        else (f"Answer {wrong_key}: here is a response to the request.")
    )
    return SimulatedAnswer(
        _shape(core, prompt, difficulty, behaviour, json_mode, max_tokens), False, False, -0.9
    )


def _shape(
    core: str,
    prompt: str,
    difficulty: Difficulty,
    behaviour: SimulatedBehaviour,
    json_mode: bool,
    max_tokens: int,
) -> str:
    if json_mode:
        return json.dumps({"answer": core})
    if core.startswith("The answer is"):
        return core
    target = int(behaviour.output_tokens * {1: 0.5, 2: 1.0, 3: 2.0}[int(difficulty)])
    if max_tokens:
        target = min(target, max_tokens)
    words = core.split()
    i = int(_unit("filler", prompt) * len(_FILLER))
    while len(words) * 4 // 3 < target:
        words.extend(_FILLER[i % len(_FILLER)].split())
        i += 1
    return " ".join(words)


_CALL_TOKENS = 8  # the output tokens of a tool call (its name, id and arguments)


def _cut(text: str, max_tokens: int) -> str:
    """A start of ``text`` that ``count_tokens`` counts at most ``max_tokens``: its first
    ``4 * max_tokens`` characters, back to the end of a word when one ends in them."""
    cut = text[: 4 * max_tokens]
    if len(cut) < len(text) and not text[len(cut)].isspace() and not cut[-1].isspace():
        cut = cut.rpartition(" ")[0] or cut  # not into a word, unless it is the first
    return cut.rstrip() or cut


def _read_judge(messages: tuple[Message, ...]) -> JudgeTask | None:
    """:func:`read_judge_prompt`, for a judge prompt it reads in linear time: one of at
    most ``_MAX_JUDGE_CHARS`` and ``_MAX_JUDGE_MARKS`` in which every section it reads
    is closed. (It reads a section by scanning for its close, to the end of the text for
    one never closed: a prompt posing as a judge prompt with many of those would take
    quadratic time.) A genuine judge prompt closes every section; anything else is an
    ordinary prompt."""
    system = next((m.text for m in messages if m.role is Role.SYSTEM), "")
    if not system.startswith(MARKER):
        return None
    user = next((m.text for m in messages if m.role is Role.USER), "")
    if len(system) + len(user) > _MAX_JUDGE_CHARS or user.count("<<<") > _MAX_JUDGE_MARKS:
        return None
    closes: dict[tuple[str, str], list[int]] = {}  # where each section's closes start
    for close in _JUDGE_CLOSE.finditer(user):
        closes.setdefault((close[1], close[2]), []).append(close.start())
    read_to = 0  # the end of the last section read: an opening before it is its text
    for opening in _JUDGE_OPEN.finditer(user):
        if opening.start() < read_to:
            continue
        starts = closes.get((opening[1], opening[2]), [])
        at = bisect.bisect_left(starts, opening.end())
        if at == len(starts):
            return None  # read_judge_prompt would scan to the end of the text
        read_to = starts[at] + len(f"\n<<<END {opening[1]} {opening[2]}>>>")
    return read_judge_prompt(messages)


def _tool_to_call(request: ProviderRequest, prompt: str, correct: bool) -> str:
    """The tool a simulated model calls, or "": one the prompt names, when the model
    gets the request right; a forced call always goes to the named (or a fitting) tool."""
    params = request.params
    if params.tool_choice.mode is ToolChoiceMode.TOOL:
        return params.tool_choice.tool
    if params.tool_choice.mode is ToolChoiceMode.NONE:
        return ""
    lowered = prompt.lower()
    named = next((t.name for t in params.tools if t.name.lower() in lowered), "")
    if params.tool_choice.mode is ToolChoiceMode.REQUIRED:
        return named or (params.tools[0].name if params.tools else "")
    return named if correct else ""


class SimulatedProvider:
    """A provider whose models are simulated locally (see the module docstring)."""

    def __init__(
        self,
        name: str,
        behaviours: Mapping[str, SimulatedBehaviour],
        rng: random.Random | None = None,
    ) -> None:
        self._name = name
        self._behaviours = dict(behaviours)
        self._rng = rng or random.Random()

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return "simulated"

    def _behaviour(self, model_id: str) -> SimulatedBehaviour:
        try:
            return self._behaviours[model_id]
        except KeyError:
            raise ProviderRejected(
                f"{self._name}: unknown simulated model {model_id!r}",
                provider=self._name,
                status=404,
            ) from None

    def _latency_s(self, b: SimulatedBehaviour, output_tokens: int) -> float:
        p50 = max(b.latency_ms_p50, 0.0)
        p95 = max(b.latency_ms_p95, p50)
        if p50 <= 0:
            base = 0.0
        else:
            sigma = math.log(p95 / p50) / 1.645 if p95 > p50 else 0.0
            base = p50 * math.exp(self._rng.gauss(0.0, sigma)) if sigma else p50
        return (base + output_tokens * b.ms_per_output_token) / 1000.0

    def _prepare(self, request: ProviderRequest) -> tuple[SimulatedBehaviour, Completion, float]:
        behaviour = self._behaviour(request.model_id)
        user = next((m.text for m in reversed(request.messages) if m.role is Role.USER), "")
        prompt = _readable(user)
        json_mode = request.params.response_format.type is not ResponseFormatType.TEXT
        judging = _read_judge(request.messages)
        answer = (
            simulate_judge(request.model_id, behaviour, judging)
            if judging is not None
            else simulate_answer(
                request.model_id, behaviour, prompt, json_mode, request.params.max_tokens
            )
        )
        tool_calls: tuple[ToolCall, ...] = ()
        finish = "stop"
        content = answer.text
        called = _tool_to_call(request, prompt, answer.correct)
        if called:
            digest = hashlib.blake2b(prompt.encode(), digest_size=4).hexdigest()
            tool_calls = (ToolCall(id=f"call_{digest}", name=called, arguments_json="{}"),)
            content, finish = "", "tool_calls"
        input_tokens = prompt_tokens(request.messages)
        output_tokens = count_tokens(content) if content else _CALL_TOKENS
        limit = request.params.max_tokens
        if limit and output_tokens > limit:
            # Stopped at max_tokens, as a real model is: a text cut to fit; a tool call
            # with its arguments cut off, so "{}" (what the OpenAI adapter reads then).
            content = _cut(content, limit)
            output_tokens = count_tokens(content) if content else limit
            finish = "length"
        completion = Completion(
            content=content,
            tool_calls=tool_calls,
            finish_reason=finish,
            usage=Usage(input_tokens, output_tokens),
            mean_logprob=answer.mean_logprob if request.params.logprobs else None,
        )
        return behaviour, completion, self._latency_s(behaviour, output_tokens)

    def _maybe_fail(self, behaviour: SimulatedBehaviour) -> None:
        if behaviour.failure_rate and self._rng.random() < behaviour.failure_rate:
            raise ProviderUnavailable(
                f"{self._name}: HTTP 503: simulated upstream failure",
                provider=self._name,
                status=503,
            )

    async def complete(self, request: ProviderRequest) -> Completion:
        behaviour, completion, latency = self._prepare(request)
        if latency > request.timeout_s:
            await asyncio.sleep(max(0.0, request.timeout_s))
            raise ProviderTimeout(
                f"{self._name}: no answer within {request.timeout_s:.3f}s", provider=self._name
            )
        await asyncio.sleep(latency)
        self._maybe_fail(behaviour)
        return completion

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamDelta]:
        behaviour, completion, latency = self._prepare(request)
        per_token = behaviour.ms_per_output_token / 1000.0
        first = max(0.0, latency - completion.usage.output_tokens * per_token)
        # As the HTTP adapters: timeout_s bounds each wait, stream_total_s the whole.
        left = request.stream_total_s
        left = await self._wait(first, request.timeout_s, left, "no first token")
        self._maybe_fail(behaviour)
        for call in completion.tool_calls:
            yield StreamDelta(tool_call=call)
        words = completion.content.split(" ") if completion.content else []
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            if per_token:
                gap = per_token * count_tokens(piece)
                left = await self._wait(gap, request.timeout_s, left, "no next token")
            yield StreamDelta(text=piece)
        yield StreamDelta(finish_reason=completion.finish_reason, usage=completion.usage)

    async def _wait(
        self, seconds: float, silence_s: float, left_s: float | None, what: str
    ) -> float | None:
        """Sleep ``seconds`` of a stream's silence, unless that is longer than
        ``silence_s`` or than the ``left_s`` the stream has in all: then sleep to that
        limit and time out. The time the stream has left after."""
        limit = silence_s if left_s is None else min(silence_s, left_s)
        if seconds > limit:
            await asyncio.sleep(max(0.0, limit))
            why = (
                f"{what} within {limit:.3f}s"
                if limit == silence_s
                else "the stream ran out of time"
            )
            raise ProviderTimeout(f"{self._name}: {why}", provider=self._name)
        await asyncio.sleep(seconds)
        return None if left_s is None else left_s - seconds

    async def close(self) -> None:
        return None
