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
``json_schema`` conforms to the request's JSON Schema, when it gave one; "not checked"
               (and passed: the gate cannot judge, so it does not fail the answer) when
               the schema cannot be used or validating the answer cannot be completed
``logprob``    mean token log-probability at or above a threshold, when the provider gave one
verifiers      each :class:`Verifier` plugged in (e.g. a learned acceptability scorer)

Checks that do not apply (no JSON asked for, no log-probabilities returned) are left out
of the verdict rather than recorded as passed.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import jsonschema
import re2
import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema import _legacy_keywords
from jsonschema._utils import extras_msg
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from quorum.server.domain import (
    Completion,
    GateCheck,
    GateVerdict,
    ResponseFormatType,
    RouteRequest,
)
from quorum.server.errors import clip
from quorum.server.names import json_object_problem
from quorum.server.values import value_type

if TYPE_CHECKING:
    from _collections_abc import dict_items

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


# A caller's JSON Schema is checked when the request arrives (service/convert.py, which
# answers INVALID_ARGUMENT with what :func:`schema_problem` says) and compiled once here.
# Its JSON is as strict as the providers' parsers (no NaN, no number beyond a double).
# Checking a schema against its metaschema costs jsonschema about a millisecond per
# subschema, so its size is bounded; a ``$ref`` is resolved inside the schema only (nothing
# is ever fetched), and references may not loop without descending into the value (a
# validation that would never end); and validating an answer is metered, in steps and in
# time, because references let a small schema ask for exponentially many steps (each
# subschema referring twice to the next). The gate runs on the event loop: these bound
# how long one answer can hold it. A validation cut short is "not checked", and passed.
#
# The schema's regular expressions (each "pattern", each name of "patternProperties") are
# RE2's, never Python's: re backtracks, and a pattern such as "(a+)+$" takes time
# exponential in the length of the text it fails on, holding the loop (in C, so nothing
# interrupts it). RE2 matches in time linear in the text (it has no lookaround and no
# backreferences: a schema that uses them is refused) times the size of the compiled
# pattern, and those sizes are bounded too.
MAX_SCHEMA_CHARS = 128 * 1024  # the schema's JSON text
MAX_SCHEMA_NODES = 256  # JSON objects, arrays and booleans (a boolean is a subschema too)
MAX_SCHEMA_DEPTH = 32  # how deep they nest
MAX_VALIDATION_STEPS = 20_000  # objects visited validating one answer
MAX_VALIDATION_S = 0.25  # and the time that may take
MAX_SCHEMA_PATTERNS = 256  # distinct regular expressions in one schema
MAX_PATTERN_MEMORY = 256 * 1024  # RE2's memory for one: a program of ~14,000 instructions
MAX_SCHEMA_PATTERN_SIZE = 50_000  # RE2 instructions of all a schema's patterns together
MAX_PATTERN_WORK = 20_000_000  # instructions × bytes of text for one match (~0.25 s at worst)
_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
_DIALECT = jsonschema.validators.Draft202012Validator  # a schema without "$schema"


class _Steps(threading.local):
    """What is left of the validation in progress in this thread (None: no metering)."""

    left: int | None = None
    deadline = 0.0


_STEPS = _Steps()


class _TooCostly(Exception):
    """Validating an answer took more steps or time than it may."""


class _Metered(dict[str, Any]):
    """A JSON object of a caller's schema or of an answer: jsonschema lists a subschema's
    keywords each time it visits it (and an object's items to compare it with another),
    and while an answer is validated each listing costs a step."""

    def items(self) -> dict_items[str, Any]:
        left = _STEPS.left
        if left is not None:
            if left <= 0 or time.monotonic() > _STEPS.deadline:
                raise _TooCostly
            _STEPS.left = left - 1
        return super().items()


def _no_retrieval(uri: str) -> referencing.Resource[Any]:
    """Remote references are never fetched: the schema must be self-contained."""
    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]


_REGISTRY: referencing.Registry[Any] = referencing.Registry(retrieve=_no_retrieval)  # type: ignore[call-arg]

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.max_mem = MAX_PATTERN_MEMORY
_RE2_OPTIONS.log_errors = False  # a caller's pattern RE2 refuses is the caller's error
_RE2_OPTIONS.never_capture = True  # whether it matches is all the gate asks


@lru_cache(maxsize=MAX_SCHEMA_PATTERNS)
def _regex(pattern: str) -> re2._Regexp[str]:
    """A caller's pattern compiled by RE2 (raises ``re2.error`` when it cannot be)."""
    return re2.compile(pattern, _RE2_OPTIONS)


def _search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches somewhere in ``text`` (JSON Schema patterns are not
    anchored), by RE2. Each match is metered: it is not started past the validation's
    deadline, nor when its size and the text's could make it cost too much."""
    if _STEPS.left is not None and time.monotonic() > _STEPS.deadline:
        raise _TooCostly
    regex = _regex(pattern)
    data = text.encode("utf-8", "surrogatepass")  # JSON may hold a lone surrogate
    if regex.programsize * len(data) > MAX_PATTERN_WORK:
        raise _TooCostly
    return regex.search(data) is not None


def _pattern_problem(schema: dict[str, Any]) -> str | None:
    """Why a regular expression of the schema cannot be used: not RE2 syntax, or too
    large. Every "pattern" string and every name of a "patternProperties" object counts,
    anywhere in the schema (a reference may point anywhere in it)."""
    seen: set[str] = set()
    size = 0
    stack: list[Any] = [schema]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
            continue
        if not isinstance(value, dict):
            continue
        found = [value["pattern"]] if isinstance(value.get("pattern"), str) else []
        names = value.get("patternProperties")
        if isinstance(names, dict):
            found.extend(names)
        for pattern in found:
            if pattern in seen:
                continue
            seen.add(pattern)
            if len(seen) > MAX_SCHEMA_PATTERNS:
                return f"has more than {MAX_SCHEMA_PATTERNS} distinct patterns"
            shown = clip(pattern, 64)
            try:
                size += _regex(pattern).programsize
            except re2.error as exc:
                detail = exc.args[0] if exc.args else ""
                if isinstance(detail, bytes):
                    detail = detail.decode("utf-8", "replace")
                if "too large" in detail:
                    return (
                        f"pattern {shown!r} is too large: RE2 compiles it to more than "
                        f"{MAX_PATTERN_MEMORY // 1024} KiB"
                    )
                return (
                    f"pattern {shown!r} is not supported: patterns use RE2 syntax "
                    f"(no lookaround or backreferences): {clip(str(detail), 80)}"
                )
            except UnicodeError:
                return f"pattern {shown!r} is not supported: it is not valid Unicode text"
            if size > MAX_SCHEMA_PATTERN_SIZE:
                return (
                    f"patterns are too large together: more than {MAX_SCHEMA_PATTERN_SIZE} "
                    "RE2 instructions"
                )
        stack.extend(value.values())
    return None


# jsonschema's keywords that match with Python's re, done with RE2 instead: "pattern",
# "patternProperties", and "additionalProperties" and "unevaluatedProperties", which skip
# the names "patternProperties" matches. Messages and the rest are jsonschema's own.


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for name, value in instance.items():
            if _search(pattern, name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_names(instance: dict[str, Any], schema: dict[str, Any]) -> Iterator[str]:
    """The names of ``instance`` neither "properties" nor "patternProperties" covers."""
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    for name in instance:
        if name not in properties and not any(_search(p, name) for p in patterns):
            yield name


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = set(_additional_names(instance, schema))
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            patterns = ", ".join(repr(each) for each in sorted(schema["patternProperties"]))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {patterns}")
        else:
            names, were = extras_msg(sorted(extras, key=str))
            yield ValidationError(
                f"Additional properties are not allowed ({names} {were} unexpected)"
            )


def _evaluated_names(validator: Any, instance: Any, schema: Any, *, draft2019: bool) -> list[str]:
    """The names of ``instance`` that ``schema`` evaluates: jsonschema's
    find_evaluated_property_keys_by_schema (its draft 2019-09 one with ``draft2019``)."""
    if validator.is_type(schema, "boolean"):
        return []
    names: list[str] = []
    targets = []
    ref = schema.get("$ref")
    if ref is not None:
        targets.append(validator._resolver.lookup(ref))
    if draft2019:
        if "$recursiveRef" in schema:
            targets.append(referencing.jsonschema.lookup_recursive_ref(validator._resolver))
    else:
        dynamic_ref = schema.get("$dynamicRef")
        if dynamic_ref is not None:
            targets.append(validator._resolver.lookup(dynamic_ref))
    for resolved in targets:
        names += _evaluated_names(
            validator.evolve(schema=resolved.contents, _resolver=resolved.resolver),
            instance,
            resolved.contents,
            draft2019=draft2019,
        )
    if draft2019:
        for keyword in ("properties", "additionalProperties", "unevaluatedProperties"):
            if keyword in schema:
                value = schema[keyword]
                if validator.is_type(value, "boolean") and value:
                    names += instance.keys()
                elif validator.is_type(value, "object"):
                    names += (name for name in value if name in instance)
    else:
        properties = schema.get("properties")
        if validator.is_type(properties, "object"):
            names += properties.keys() & instance.keys()
        for keyword in ("additionalProperties", "unevaluatedProperties"):
            subschema = schema.get(keyword)
            if subschema is not None:
                names += (
                    name
                    for name, value in instance.items()
                    if next(validator.descend(value, subschema), None) is None
                )
    if "patternProperties" in schema:
        for name in instance:
            for pattern in schema["patternProperties"]:
                if _search(pattern, name):
                    names.append(name)
    if "dependentSchemas" in schema:
        for name, subschema in schema["dependentSchemas"].items():
            if name in instance:
                names += _evaluated_names(validator, instance, subschema, draft2019=draft2019)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, []):
            if next(validator.descend(instance, subschema), None) is None:
                names += _evaluated_names(validator, instance, subschema, draft2019=draft2019)
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            names += _evaluated_names(validator, instance, schema["if"], draft2019=draft2019)
            if "then" in schema:
                names += _evaluated_names(validator, instance, schema["then"], draft2019=draft2019)
        elif "else" in schema:
            names += _evaluated_names(validator, instance, schema["else"], draft2019=draft2019)
    return names


def _unevaluated(
    validator: Any, unevaluated: Any, instance: Any, schema: Any, *, draft2019: bool
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    evaluated = _evaluated_names(validator, instance, schema, draft2019=draft2019)
    invalid: list[str] = []
    for name in instance:
        if name not in evaluated:
            for _ in validator.descend(instance[name], unevaluated, path=name, schema_path=name):
                invalid.append(name)
    if invalid:
        if unevaluated is False:
            names, were = extras_msg(sorted(invalid, key=str))
            yield ValidationError(
                f"Unevaluated properties are not allowed ({names} {were} unexpected)"
            )
        else:
            names, were = extras_msg(invalid)
            yield ValidationError(
                "Unevaluated properties are not valid under the given schema "
                f"({names} {were} unevaluated and invalid)"
            )


def _unevaluated_properties(
    validator: Any, unevaluated: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    return _unevaluated(validator, unevaluated, instance, schema, draft2019=False)


def _unevaluated_properties_2019(
    validator: Any, unevaluated: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    return _unevaluated(validator, unevaluated, instance, schema, draft2019=True)


_RE2_KEYWORDS = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "unevaluatedProperties": _unevaluated_properties,
}
_RE2_CLASSES: dict[type[Validator], type[Validator]] = {}


def _re2_class(cls: type[Validator]) -> type[Validator]:
    """The jsonschema validator class ``cls`` with RE2 doing its regular expressions."""
    found = _RE2_CLASSES.get(cls)
    if found is not None:
        return found
    keywords = {name: fn for name, fn in _RE2_KEYWORDS.items() if name in cls.VALIDATORS}
    if cls.VALIDATORS.get("unevaluatedProperties") is (
        _legacy_keywords.unevaluatedProperties_draft2019
    ):
        keywords["unevaluatedProperties"] = _unevaluated_properties_2019
    new: type[Validator] = jsonschema.validators.extend(cls, keywords)  # type: ignore[no-untyped-call]
    fields = [(field.name, field.alias) for field in attrs.fields(new) if field.init]  # type: ignore[arg-type]

    def evolve(self: Validator, **changes: Any) -> Validator:
        # jsonschema's own evolve picks the class of a subschema that names its "$schema"
        # (the root, reached again by "$ref": "#", often does): one of its own, using re.
        schema = changes.setdefault("schema", self.schema)
        target = _re2_class(jsonschema.validators.validator_for(schema, default=type(self)))
        for name, alias in fields:
            if alias not in changes:
                changes[alias] = getattr(self, name)
        return target(**changes)

    new.evolve = evolve  # type: ignore[method-assign]
    _RE2_CLASSES[cls] = _RE2_CLASSES[new] = new
    return new


@cache
def _meta_format_checker(cls: type[Validator]) -> jsonschema.FormatChecker:
    """The format checks of ``cls``'s metaschema but "regex" (Python's syntax): the
    schema's patterns are RE2's, checked by :func:`_pattern_problem`."""
    checker = jsonschema.FormatChecker(formats=())
    for name, (check, raises) in cls.FORMAT_CHECKER.checkers.items():
        if name != "regex":
            checker.checks(name, raises)(check)
    return checker


def _shape_problem(schema: Any) -> str | None:
    """Whether the schema is too large or too deeply nested to check and use."""
    nodes = 0
    stack: list[tuple[Any, int]] = [(schema, 1)]
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_SCHEMA_NODES:
            return f"is too large: more than {MAX_SCHEMA_NODES} objects, arrays and booleans"
        if depth > MAX_SCHEMA_DEPTH:
            return f"nests objects and arrays more than {MAX_SCHEMA_DEPTH} deep"
        if isinstance(value, bool):
            continue
        children = value.values() if isinstance(value, dict) else value
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, dict | list | bool)
        )
    return None


# Keywords that apply subschemas to the value being validated itself, not to a part of it,
# whatever that value is: "allOf", "oneOf" (every branch is evaluated, to count the ones
# that pass), "not", "if", the first branch of "anyOf" (it stops at the first that
# passes), and "then" after an "if" of {} or true ("else" after false). A chain of them
# and of references that comes back to a subschema on it never ends, whatever the
# answer: jsonschema recurses until Python stops it. Keywords that apply a subschema only
# sometimes (a later "anyOf" branch, "then"/"else" after a real condition,
# "dependentSchemas" that need their property) can close a loop that ends for some
# answers: such a schema is taken, and an answer the validation cannot finish on is
# "not checked".
_IN_PLACE_ONE = ("not", "if")
_IN_PLACE_ARRAYS = ("allOf", "oneOf")
_IN_PLACE_WORDS = "$ref, allOf, oneOf, not or if"
# Before draft 2019-09, a "$ref" is the whole subschema: its siblings are not applied.
_REF_ALONE = frozenset(
    {
        referencing.jsonschema.DRAFT3,
        referencing.jsonschema.DRAFT4,
        referencing.jsonschema.DRAFT6,
        referencing.jsonschema.DRAFT7,
    }
)

# The keywords whose values hold subschemas, by shape, as referencing walks them; "items"
# is one subschema or (before draft 2020-12) an array of them, and each value of
# "dependencies" a subschema or an array of property names.
_ONE_SUBSCHEMA = frozenset(
    {
        "additionalItems",
        "additionalProperties",
        "contains",
        "contentSchema",
        "else",
        "if",
        "items",
        "not",
        "propertyNames",
        "then",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
_SUBSCHEMA_ARRAYS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SUBSCHEMA_MAPS = frozenset(
    {"$defs", "definitions", "dependencies", "dependentSchemas", "patternProperties", "properties"}
)
_SUBSCHEMA_KEYWORDS = _ONE_SUBSCHEMA | _SUBSCHEMA_ARRAYS | _SUBSCHEMA_MAPS
_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


_Links = list[tuple[str, Any]]  # (keyword or reference, the subschema it applies)


def _in_place(contents: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The subschemas (objects only: a boolean applies nothing further) that ``contents``
    applies to the very value it validates, whatever it is, each with its keyword."""
    for keyword in _IN_PLACE_ONE:
        sub = contents.get(keyword)
        if isinstance(sub, dict):
            yield keyword, sub
    for keyword in _IN_PLACE_ARRAYS:
        subs = contents.get(keyword)
        if isinstance(subs, list):
            yield from ((keyword, sub) for sub in subs if isinstance(sub, dict))
    # "anyOf" stops at the first branch that passes, so it always tries its branches up
    # to the first that is not ``false``.
    branches = contents.get("anyOf")
    if isinstance(branches, list):
        for sub in branches:
            if sub is not False:
                if isinstance(sub, dict):
                    yield "anyOf", sub
                break
    # An "if" that always passes ({} or true) always applies "then"; one that never
    # passes (false), "else".
    if "if" in contents:
        condition = contents["if"]
        always = "then" if condition is True or condition == {} else None
        always = "else" if condition is False else always
        sub = contents.get(always) if always else None
        if isinstance(sub, dict):
            yield str(always), sub


def _loop(chains: dict[int, list[tuple[str, Any]]]) -> str | None:
    """The link (keyword, or reference) that closes a loop of in-place links, if any.
    ``chains`` holds each subschema's in-place links by its ``id``; a depth-first search,
    without recursion, over at most MAX_SCHEMA_NODES subschemas."""
    state: dict[int, bool] = {}  # True: on the chain followed now; False: done, no loop
    for start in chains:
        if start in state:
            continue
        state[start] = True
        stack = [(start, iter(chains[start]))]
        while stack:
            node, links = stack[-1]
            link = next(links, None)
            if link is None:
                state[node] = False
                stack.pop()
                continue
            label, target = link
            key = id(target)
            on_chain = state.get(key)
            if on_chain:
                return label
            if on_chain is None and key in chains:
                state[key] = True
                stack.append((key, iter(chains[key])))
    return None


def _reference_problem(schema: dict[str, Any]) -> str | None:
    """Why a reference of the schema does not lead to a subschema of the schema itself,
    or why its references loop: a chain of in-place keywords and references that comes
    back to a subschema on it without descending into the value. Validating any answer
    against such a loop cannot end (the gate could never check it), so it is refused on
    arrival rather than found, again and again, at the gate."""
    dialect = schema.get("$schema")
    specification = referencing.jsonschema.specification_with(
        dialect if isinstance(dialect, str) else "", default=referencing.jsonschema.DRAFT202012
    )
    ref_alone = specification in _REF_ALONE
    root = specification.create_resource(schema)
    stack = [(root, _REGISTRY.resolver_with_root(root))]
    # Each subschema with its in-place links when they are its references alone (a
    # "$ref" before draft 2019-09), else None; and its references.
    subschemas: list[tuple[dict[str, Any], _Links | None, _Links]] = []
    referring = False
    while stack:
        resource, resolver = stack.pop()
        resolver = resolver.in_subresource(resource)
        contents = resource.contents
        if isinstance(contents, dict):
            links: list[tuple[str, Any]] = []
            for keyword in _REF_KEYWORDS:
                ref = contents.get(keyword)
                if not isinstance(ref, str):
                    continue
                try:
                    target = resolver.lookup(ref).contents
                except (referencing.exceptions.Unresolvable, ValueError):
                    return (
                        f"{keyword} {clip(ref, 64)!r} does not resolve within the schema "
                        "(remote references are not fetched)"
                    )
                if not isinstance(target, _Metered | bool):
                    return f"{keyword} {clip(ref, 64)!r} does not point to a subschema of it"
                links.append((f"{keyword} {clip(ref, 64)!r}", target))
                referring = True
            subschemas.append((contents, links if ref_alone and links else None, links))
        stack.extend((sub, resolver) for sub in resource.subresources())
    if not referring:  # without a reference, subschemas nest as a tree: nothing can loop
        return None
    looped = _loop(
        {
            id(sub): alone if alone is not None else [*_in_place(sub), *refs]
            for sub, alone, refs in subschemas
        }
    )
    if looped is None:
        return None
    return (
        f"has a reference loop: {looped} comes back to a subschema it was reached from "
        f"without descending into the value (through {_IN_PLACE_WORDS}): no answer could "
        "ever be checked against it"
    )


def _json_type(value: Any) -> str:
    """What JSON calls the type of a parsed ``value`` (an _Metered dict is an object)."""
    return _JSON_TYPES.get(type(value), "null" if value is None else "an object")


def _subschemas(keyword: str, value: Any, at: str) -> list[tuple[str, Any]] | str:
    """The subschemas ``keyword`` holds, each with where it is, or what is wrong with its
    value's shape."""
    if keyword in _SUBSCHEMA_MAPS:
        if not isinstance(value, dict):
            return f"{keyword} must be an object of subschemas, not {_json_type(value)}"
        return [
            (f"{at}/{name}", sub)
            for name, sub in value.items()
            if not (keyword == "dependencies" and isinstance(sub, list))
        ]
    if keyword in _SUBSCHEMA_ARRAYS or (keyword == "items" and isinstance(value, list)):
        if not isinstance(value, list):
            return f"{keyword} must be an array of subschemas, not {_json_type(value)}"
        return [(f"{at}/{i}", sub) for i, sub in enumerate(value)]
    return [(at, value)]


def _misshapen(schema: dict[str, Any]) -> str | None:
    """Where a keyword that holds subschemas holds something else, in words (referencing
    stumbles on it with an AttributeError or a TypeError, which says nothing to the caller).
    Run only once walking the schema's subschemas has failed: ordinary schemas never pay."""
    stack: list[tuple[dict[str, Any], str]] = [(schema, "")]
    while stack:
        node, where = stack.pop()
        for keyword in node.keys() & _SUBSCHEMA_KEYWORDS:
            found = _subschemas(keyword, node[keyword], f"{where}/{keyword}".lstrip("/"))
            if isinstance(found, str):
                return f"at {where or '(root)'}: {found}"
            for at, sub in found:
                if isinstance(sub, dict):
                    stack.append((sub, at))
                elif not isinstance(sub, bool):
                    wrong = _json_type(sub)
                    return f"at {at}: a subschema must be an object or a boolean, not {wrong}"
    return None


@lru_cache(maxsize=256)
def _usable(schema_text: str) -> dict[str, Any] | str:
    """The parsed schema, or why it is unusable: checks that take time in proportion to
    the schema (strict JSON, size, depth, RE2 patterns, references within it and their
    loops), run on arrival. The JSON is as strict as the providers' (no NaN or Infinity,
    no number beyond a double), who would refuse it anyway, and without naming the field."""
    if len(schema_text) > MAX_SCHEMA_CHARS:
        return f"is {len(schema_text)} characters, limit {MAX_SCHEMA_CHARS}"
    malformed = json_object_problem(schema_text, "a JSON object", MAX_SCHEMA_DEPTH)
    if malformed:
        return malformed
    try:
        schema = json.loads(schema_text, object_hook=_Metered)
    except (ValueError, RecursionError):  # (orjson took it: never seen)
        return "must be a JSON object"
    problem = _shape_problem(schema)
    if problem is not None:
        return problem
    dialect = schema.get("$schema")
    if dialect is not None and not isinstance(dialect, str):
        return "$schema must be a string"
    try:
        problem = _pattern_problem(schema) or _reference_problem(schema)
    except Exception:  # a caller's schema must never become an internal error
        where = _misshapen(schema) or "a keyword's value is not of the type it takes"
        return f"is not a usable JSON Schema: {where}"
    return problem if problem is not None else schema


@lru_cache(maxsize=256)
def _validator(schema_text: str) -> jsonschema.protocols.Validator | str:
    """A compiled validator for a schema, or why the schema itself is unusable. Checking
    it against its metaschema costs about a millisecond per subschema, so it is done
    here, when an answer is first checked against it (cascade, consensus, shadow), not
    on arrival, where every request with a schema would pay it."""
    schema = _usable(schema_text)
    if isinstance(schema, str):
        return schema
    try:
        cls = jsonschema.validators.validator_for(schema, default=_DIALECT)
        meta = cls(cls.META_SCHEMA, format_checker=_meta_format_checker(cls))
        error = jsonschema.exceptions.best_match(meta.iter_errors(schema))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return f"is not a valid JSON Schema: at {clip(where, 64)}: {clip(error.message, 160)}"
        validator: jsonschema.protocols.Validator = _re2_class(cls)(schema, registry=_REGISTRY)
    except Exception:  # a caller's schema must never become an internal error
        return "is not a usable JSON Schema"
    return validator


def schema_problem(schema_text: str) -> str | None:
    """Why a caller's JSON Schema (JSON text) cannot be used, or None when it can: not a
    strict JSON object, too large or deep, a keyword holding a subschema of the wrong
    shape, a pattern RE2 cannot compile (or too large), a reference that does not lead
    to a subschema of the schema itself, or references that loop. (Whether it is valid
    against its metaschema is found when an answer is checked against it: a schema that
    is not is then "not checked".)"""
    usable = _usable(schema_text)
    return usable if isinstance(usable, str) else None


def _schema_check(validator: jsonschema.protocols.Validator, value: Any) -> GateCheck:
    """The json_schema check of ``value``. Never raises. A validation that cannot be
    completed (too costly, too deep, a reference it cannot follow) is "not checked" and
    passed, as a schema that cannot be used is: the gate cannot judge the answer, and
    failing it would fail every tier's answer alike, escalating (and billing) each tier
    for the schema's doing and teaching the escalation guard that the cheap tier fails."""
    _STEPS.left = MAX_VALIDATION_STEPS
    _STEPS.deadline = time.monotonic() + MAX_VALIDATION_S
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except _TooCostly:
        why = "validating this answer against the schema costs too much"
        return GateCheck("json_schema", True, f"not checked: {why}")
    except RecursionError:
        why = "validation recursed too deeply (a reference loop, or deep nesting)"
        return GateCheck("json_schema", True, f"not checked: {why}")
    except Exception:  # e.g. a reference jsonschema cannot follow
        why = "the schema could not be applied to this answer"
        return GateCheck("json_schema", True, f"not checked: {why}")
    finally:
        _STEPS.left = None
    if error is None:
        return GateCheck("json_schema", True, "conforms to the schema")
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return GateCheck("json_schema", False, f"at {clip(where, 64)}: {clip(error.message, 240)}")


def _json_checks(request: RouteRequest, completion: Completion) -> list[GateCheck]:
    fmt = request.params.response_format
    if fmt.type is ResponseFormatType.TEXT or completion.tool_calls:
        return []
    # Objects of an answer checked against a schema are metered too (comparing them, as
    # uniqueItems and enum do, lists their items).
    hook = _Metered if fmt.type is ResponseFormatType.JSON_SCHEMA else None
    try:
        value: Any = json.loads(strip_fence(completion.content), object_hook=hook)
    except ValueError as exc:
        return [GateCheck("json", False, f"not valid JSON: {exc}")]
    except RecursionError:
        return [GateCheck("json", False, "not valid JSON: nested too deeply")]
    kind = "dict" if isinstance(value, dict) else type(value).__name__
    checks = [GateCheck("json", True, f"valid JSON {kind}")]
    if fmt.type is ResponseFormatType.JSON_OBJECT and not isinstance(value, dict):
        checks[0] = GateCheck("json", False, f"expected a JSON object, got {kind}")
        return checks
    if fmt.type is ResponseFormatType.JSON_SCHEMA and fmt.json_schema:
        validator = _validator(fmt.json_schema)
        if isinstance(validator, str):
            checks.append(GateCheck("json_schema", True, f"not checked: schema {validator}"))
            return checks
        checks.append(_schema_check(validator, value))
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
