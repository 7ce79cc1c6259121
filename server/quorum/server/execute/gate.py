"""The cascade's quality gate: fast checks that decide "return this answer" or "escalate".

The gate is pure and cheap — string checks, a JSON parse, a schema validation, a number
compared with a threshold — and never calls another model (that would cost what the
cascade is trying to save). :func:`evaluate` runs the checks in order and records each
one that applies, with its verdict and reason:

``non_empty``  the answer has text or a tool call (nothing else runs when it fails)
``length``     not cut off at the token limit, at least ``min_chars`` long, no degenerate
               repetition of one phrase
``refusal``    no refusal or hedging phrase near the start (several languages; configurable)
``json``       parses as JSON, when the request asked for JSON
``json_schema`` conforms to the request's JSON Schema, when it gave one
``logprob``    mean token log-probability at or above a threshold, when the provider gave one
verifiers      each :class:`Verifier` plugged in (e.g. a learned acceptability scorer)

Checks that do not apply (no JSON asked for, no log-probabilities returned) are left out
of the verdict rather than recorded as passed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

import jsonschema

from quorum.server.domain import (
    Completion,
    GateCheck,
    GateVerdict,
    ResponseFormatType,
    RouteRequest,
)
from quorum.server.values import value_type

#: Refusal and hedging openers, lower-case, in the languages callers commonly use.
DEFAULT_REFUSAL_PHRASES: tuple[str, ...] = (
    # English
    "i cannot",
    "i can't",
    "i can not",
    "i'm sorry",
    "i am sorry",
    "i apologize",
    "i apologise",
    "i'm not able to",
    "i am not able to",
    "i'm unable to",
    "i am unable to",
    "i won't be able to",
    "as an ai",
    "i'm not sure",
    "i am not sure",
    "i don't know",
    "i do not know",
    # French
    "je ne peux pas",
    "je suis désolé",
    "désolé, ",
    "je ne suis pas en mesure",
    # German
    "es tut mir leid",
    "ich kann nicht",
    "ich kann leider",
    "ich bin nicht in der lage",
    # Spanish
    "lo siento",
    "no puedo",
    "no estoy seguro",
    # Italian
    "mi dispiace",
    "non posso",
    # Portuguese
    "desculpe",
    "não posso",
    "sinto muito",
    # Dutch
    "het spijt me",
    "ik kan niet",
    # Russian
    "извините",
    "я не могу",
    # Chinese
    "抱歉",
    "对不起",
    "我无法",
    "我不能",
    # Japanese
    "申し訳",
    "できません",
    # Korean
    "죄송",
    "할 수 없습니다",
)

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'"})
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_WORD = re.compile(r"\w+", re.UNICODE)


@value_type
class GatePolicy:
    """Thresholds of the gate, compiled from ``routing.cascade.gate``."""

    min_chars: int = 1
    refusal_phrases: tuple[str, ...] = DEFAULT_REFUSAL_PHRASES
    refusal_scan_chars: int = 240
    min_mean_logprob: float | None = -0.7
    request_logprobs: bool = True
    max_repeated_share: float = 0.3


class Verifier(Protocol):
    """A pluggable check, e.g. a learned acceptability scorer. Must be fast and pure:
    no network, no model call. Returns one recorded check."""

    @property
    def name(self) -> str: ...

    def verify(self, request: RouteRequest, completion: Completion) -> GateCheck: ...


def strip_fence(text: str) -> str:
    """The body of a single Markdown code fence, or ``text`` unchanged."""
    match = _FENCE.match(text)
    return match.group(1) if match else text


def _non_empty(completion: Completion) -> GateCheck:
    if completion.tool_calls:
        return GateCheck("non_empty", True, f"{len(completion.tool_calls)} tool call(s)")
    if completion.content.strip():
        return GateCheck("non_empty", True, f"{len(completion.content)} chars")
    return GateCheck("non_empty", False, "empty answer")


# A text most of whose n-word shingles repeat earlier ones is a loop, whatever the
# length of the phrase that loops (the most frequent shingle's share is only 1/k for a
# phrase of k words).
MAX_SELF_REPEAT = 0.8


def repeated_share(text: str, n: int = 4) -> float:
    """Share of ``n``-word shingles taken by the most frequent one (0 for short texts)."""
    words = _WORD.findall(text.lower())
    if len(words) < 8 * n:
        return 0.0
    shingles = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return shingles.most_common(1)[0][1] / sum(shingles.values())


def self_repeat_share(text: str, n: int = 4) -> float:
    """Share of ``n``-word shingles that repeat an earlier one (0 for short texts)."""
    words = _WORD.findall(text.lower())
    if len(words) < 8 * n:
        return 0.0
    total = len(words) - n + 1
    return 1.0 - len({tuple(words[i : i + n]) for i in range(total)}) / total


def _length(request: RouteRequest, completion: Completion, policy: GatePolicy) -> GateCheck:
    text = completion.content.strip()
    if completion.finish_reason == "length" and not request.params.max_tokens:
        return GateCheck("length", False, "cut off at the model's token limit")
    if len(text) < policy.min_chars:
        return GateCheck("length", False, f"{len(text)} chars < minimum {policy.min_chars}")
    share = repeated_share(text)
    if share > policy.max_repeated_share:
        return GateCheck(
            "length", False, f"degenerate repetition: one phrase is {share:.0%} of the text"
        )
    looped = self_repeat_share(text)
    if looped > max(MAX_SELF_REPEAT, policy.max_repeated_share):
        return GateCheck(
            "length", False, f"degenerate repetition: {looped:.0%} of the text repeats itself"
        )
    note = " (cut off at the caller's max_tokens)" if completion.finish_reason == "length" else ""
    return GateCheck("length", True, f"{len(text)} chars{note}")


def _spaced(char: str) -> bool:
    """Whether words around ``char`` are set apart by spaces (not so in Chinese or
    Japanese, where a phrase inside a sentence touches other characters)."""
    return char.isalnum() and ord(char) < 0x2E80


def _whole_words(folded: str) -> re.Pattern[str]:
    before = r"(?<!\w)" if folded and _spaced(folded[0]) else ""
    after = r"(?!\w)" if folded and _spaced(folded[-1]) else ""
    return re.compile(before + re.escape(folded) + after)


@lru_cache(maxsize=64)
def _folded(phrases: tuple[str, ...]) -> tuple[tuple[str, str, re.Pattern[str]], ...]:
    """Each phrase, case-folded, and a pattern that finds it as whole words only ("I
    cannot" is not in "Pi cannot", nor "as an AI" in "as an aide"); built once per list."""
    return tuple(
        (phrase, folded, _whole_words(folded))
        for phrase, folded in ((p, p.casefold()) for p in phrases)
    )


def find_refusal(text: str, phrases: Sequence[str], scan_chars: int) -> str | None:
    """The first refusal phrase found near the start of ``text``, as whole words, if any."""
    head = text[:scan_chars].translate(_APOSTROPHES).casefold()
    for phrase, folded, pattern in _folded(
        phrases if isinstance(phrases, tuple) else tuple(phrases)
    ):
        if folded in head and pattern.search(head):
            return phrase
    return None


def _refusal(completion: Completion, policy: GatePolicy) -> GateCheck:
    found = find_refusal(completion.content, policy.refusal_phrases, policy.refusal_scan_chars)
    if found is not None:
        return GateCheck("refusal", False, f'refusal or hedge: "{found}"')
    return GateCheck("refusal", True, "no refusal phrase")


@lru_cache(maxsize=256)
def _validator(schema_text: str) -> jsonschema.protocols.Validator | str:
    """A compiled validator for a schema, or why the schema itself is unusable."""
    try:
        schema = json.loads(schema_text)
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except (ValueError, jsonschema.SchemaError) as exc:
        return f"schema unusable: {str(exc).splitlines()[0]}"
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def _json_checks(request: RouteRequest, completion: Completion) -> list[GateCheck]:
    fmt = request.params.response_format
    if fmt.type is ResponseFormatType.TEXT or completion.tool_calls:
        return []
    try:
        value: Any = json.loads(strip_fence(completion.content))
    except ValueError as exc:
        return [GateCheck("json", False, f"not valid JSON: {exc}")]
    checks = [GateCheck("json", True, f"valid JSON {type(value).__name__}")]
    if fmt.type is ResponseFormatType.JSON_OBJECT and not isinstance(value, dict):
        checks[0] = GateCheck("json", False, f"expected a JSON object, got {type(value).__name__}")
        return checks
    if fmt.type is ResponseFormatType.JSON_SCHEMA and fmt.json_schema:
        validator = _validator(fmt.json_schema)
        if isinstance(validator, str):
            checks.append(GateCheck("json_schema", True, f"not checked: {validator}"))
            return checks
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            checks.append(GateCheck("json_schema", False, f"at {where}: {error.message}"))
        else:
            checks.append(GateCheck("json_schema", True, "conforms to the schema"))
    return checks


def _logprob(completion: Completion, policy: GatePolicy) -> list[GateCheck]:
    if completion.mean_logprob is None or policy.min_mean_logprob is None:
        return []
    value, floor = completion.mean_logprob, policy.min_mean_logprob
    if value < floor:
        return [GateCheck("logprob", False, f"mean logprob {value:.3f} < {floor:.3f}")]
    return [GateCheck("logprob", True, f"mean logprob {value:.3f} >= {floor:.3f}")]


def evaluate(
    request: RouteRequest,
    completion: Completion,
    policy: GatePolicy,
    verifiers: Sequence[Verifier] = (),
) -> GateVerdict:
    """Run every applicable check on ``completion`` and return the verdict."""
    first = _non_empty(completion)
    if not first.passed:
        return GateVerdict(False, (first,))
    checks = [first]
    if not completion.tool_calls:
        checks.append(_length(request, completion, policy))
        checks.append(_refusal(completion, policy))
    checks.extend(_json_checks(request, completion))
    checks.extend(_logprob(completion, policy))
    if not completion.tool_calls and request.params.response_format.type is ResponseFormatType.TEXT:
        # Verifiers read a text answer; a tool call or JSON is judged by the checks above.
        checks.extend(v.verify(request, completion) for v in verifiers)
    return GateVerdict(all(c.passed for c in checks), tuple(checks))


def failure_summary(verdict: GateVerdict) -> str:
    """``"gate: refusal (…); logprob (…)"`` for the checks that failed."""
    failed = [f"{c.name} ({c.reason})" for c in verdict.checks if not c.passed]
    return "gate: " + "; ".join(failed) if failed else "gate passed"


def usable(verdict: GateVerdict) -> bool:
    """An answer worth a vote: not empty, not a refusal, parses when JSON was asked for.

    Consensus uses this to let broken answers abstain; the length and confidence checks
    are left to the vote itself.
    """
    hard = {"non_empty", "refusal", "json", "json_schema"}
    return all(c.passed for c in verdict.checks if c.name in hard)
