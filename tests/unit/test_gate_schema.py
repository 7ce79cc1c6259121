"""A caller's JSON Schema: checked when the request arrives, never fetched from anywhere,
and never an exception (or an unbounded amount of work) when the gate validates an answer."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import jsonschema
import jsonschema._keywords
import jsonschema._legacy_keywords
import jsonschema._utils
import pytest
import referencing

from quorum.server.domain import (
    Completion,
    GenerationParams,
    Hints,
    Message,
    ResponseFormat,
    ResponseFormatType,
    Role,
    RouteRequest,
)
from quorum.server.execute import gate
from quorum.server.execute.gate import GatePolicy, evaluate, schema_problem


@pytest.fixture(autouse=True)
def _no_fetching(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a schema made the server fetch {args[0]!r}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _request(schema: str) -> RouteRequest:
    return RouteRequest(
        request_id="r1",
        messages=(Message(Role.USER, "Give me JSON"),),
        params=GenerationParams(
            response_format=ResponseFormat(ResponseFormatType.JSON_SCHEMA, schema)
        ),
        hints=Hints(),
    )


def _schema_check(schema: str, answer: str) -> tuple[bool, str]:
    verdict = evaluate(_request(schema), Completion(answer), GatePolicy())
    check = next(c for c in verdict.checks if c.name == "json_schema")
    return check.passed, check.reason


def _exponential(levels: int) -> str:
    """Each subschema refers twice to the next: 2**levels visits for any answer."""
    defs: dict[str, Any] = {
        f"a{i}": {"allOf": [{"$ref": f"#/$defs/a{i + 1}"}, {"$ref": f"#/$defs/a{i + 1}"}]}
        for i in range(levels)
    }
    defs[f"a{levels}"] = {"type": "object"}
    return json.dumps({"$defs": defs, "$ref": "#/$defs/a0"})


@pytest.mark.parametrize(
    "schema",
    [
        '{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}',
        '{"$defs": {"n": {"type": "integer"}}, "properties": {"x": {"$ref": "#/$defs/n"}}}',
        '{"$schema": "http://json-schema.org/draft-07/schema#",'
        ' "definitions": {"n": {"type": "integer"}},'
        ' "properties": {"x": {"$ref": "#/definitions/n"}}}',
        '{"$id": "https://example.com/root.json",'
        ' "$defs": {"n": {"$id": "n.json", "type": "integer"}},'
        ' "properties": {"x": {"$ref": "n.json"}}}',
        '{"type": "object", "properties": {"child": {"$ref": "#"}}}',
        '{"$dynamicAnchor": "node", "properties": {"c": {"$dynamicRef": "#node"}}}',
    ],
)
def test_self_contained_schemas_are_accepted(schema: str) -> None:
    assert schema_problem(schema) is None


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ('{"$ref": "#/definitions/missing"}', "does not resolve within the schema"),
        ('{"$ref": "#missing-anchor"}', "does not resolve within the schema"),
        ('{"$ref": "http://127.0.0.1:9/internal/admin.json"}', "are not fetched"),
        ('{"$ref": "https://json-schema.org/draft/2020-12/schema"}', "does not resolve"),
        ('{"properties": {"a": {"$ref": "other.json#/x"}}}', "does not resolve"),
        ('{"$ref": "http://[::1/x"}', "does not resolve"),
        ('{"$defs": {"s": {"const": "x"}}, "$ref": "#/$defs/s/const"}', "subschema"),
        ('{"pattern": "("}', "pattern '(' is not supported"),
        ('{"$schema": ["x"]}', "$schema must be a string"),
        ("[1]", "must be a JSON object"),
        ("{bad", "must be a JSON object"),
        # As strict as the providers' parsers: they would refuse it, without naming it.
        ('{"type": "number", "maximum": NaN}', "NaN, Infinity and -Infinity are not JSON"),
        ('{"type": "number", "maximum": Infinity}', "NaN, Infinity and -Infinity are not JSON"),
        ('{"type": "number", "minimum": -Infinity}', "NaN, Infinity and -Infinity are not JSON"),
        ('{"type": "number", "maximum": 1e999}', "has a number out of range"),
        ('{"maximum": ' + "9" * 5000 + "}", "has a number out of range"),
        # A keyword holding subschemas that holds something else, in words.
        (
            '{"type": "object", "properties": [1, 2]}',
            "is not a usable JSON Schema: at (root): properties must be an object of"
            " subschemas, not an array",
        ),
        ('{"allOf": {"a": {}}}', "at (root): allOf must be an array of subschemas, not an object"),
        (
            '{"properties": {"a": {"items": [{}, 5]}}}',
            "at properties/a/items/1: a subschema must be an object or a boolean, not a number",
        ),
        ('{"not": "x"}', "at not: a subschema must be an object or a boolean, not a string"),
        ('{"$defs": null}', "at (root): $defs must be an object of subschemas, not null"),
        ('{"properties": true}', "properties must be an object of subschemas, not a boolean"),
        ('{"a":' * 40 + "1" + "}" * 40, "deep"),
        ("[" * 100_000 + "]" * 100_000, "characters"),
        (json.dumps({"anyOf": [True] * 300}), "too large"),
    ],
)
def test_unusable_schemas_are_named(schema: str, says: str) -> None:
    problem = schema_problem(schema)
    assert problem is not None and says in problem, problem
    assert len(problem) < 400


def test_a_checked_schema_takes_little_time() -> None:
    # The largest schema accepted: checking it against its metaschema is the cost.
    biggest = json.dumps({"anyOf": [{}] * (gate.MAX_SCHEMA_NODES - 2)})
    started = time.monotonic()
    assert schema_problem(biggest) is None
    assert time.monotonic() - started < 2.0


def test_the_gate_never_raises_on_a_schema_it_cannot_follow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A validator whose reference cannot be followed raises inside jsonschema: that is
    # a failed check, never an exception out of the gate.
    broken = jsonschema.Draft202012Validator(
        {"$ref": "#/nowhere"},
        registry=referencing.Registry(),
    )
    monkeypatch.setattr(gate, "_validator", lambda text: broken)
    passed, reason = _schema_check('{"$ref": "#/nowhere"}', "{}")
    assert passed and reason.startswith("not checked: ")
    assert "Error" not in reason  # in words, never a Python exception's name


def test_an_unusable_schema_that_reached_the_gate_is_noted() -> None:
    # (The OpenAI-compatible door may hand it one; the gRPC door refuses it first.)
    passed, reason = _schema_check('{"$ref": "http://127.0.0.1:9/x.json"}', "{}")
    assert passed and "not checked" in reason


@pytest.mark.parametrize("schema", ['{"type": "nonsense"}', '{"required": "a"}'])
def test_a_schema_invalid_against_its_metaschema_is_found_at_the_gate(schema: str) -> None:
    # On arrival only the checks that cost time in proportion to the schema run: the
    # metaschema check (about a millisecond per subschema) waits for an answer to check.
    assert schema_problem(schema) is None
    passed, reason = _schema_check(schema, "{}")
    assert passed and "not checked: schema is not a valid JSON Schema" in reason


def test_arrival_checks_of_a_large_schema_are_cheap() -> None:
    # 60 properties: the metaschema check took tens of milliseconds on arrival.
    schema = json.dumps(
        {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(60)}}
    )
    started = time.process_time()
    for i in range(20):  # each text new to the cache
        assert schema_problem(schema + " " * i) is None
    assert (time.process_time() - started) / 20 < 0.01


def test_exponential_references_are_cut_short() -> None:
    schema = _exponential(40)
    assert schema_problem(schema) is None  # small and self-contained
    started = time.monotonic()
    passed, reason = _schema_check(schema, "{}")
    assert passed and reason == (
        "not checked: validating this answer against the schema costs too much"
    )
    assert time.monotonic() - started < 2.0


_LOOPS = [
    '{"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}',
    '{"allOf": [{"$ref": "#"}]}',
    '{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}',
    '{"oneOf": [{"not": {"$ref": "#"}}]}',
    '{"if": {"$ref": "#"}}',
    '{"$dynamicAnchor": "n", "allOf": [{"$dynamicRef": "#n"}]}',
    '{"$schema": "http://json-schema.org/draft-07/schema#",'
    ' "definitions": {"a": {"$ref": "#/definitions/a"}},'
    ' "properties": {"x": {"$ref": "#/definitions/a"}}}',
    '{"$defs": {"a": {"$id": "https://example.com/a", "allOf": [{"$ref": "a"}]}}}',
    '{"anyOf": [{"$ref": "#"}]}',
    '{"anyOf": [false, {"$ref": "#"}, {"type": "string"}]}',
    '{"if": true, "then": {"allOf": [{"$ref": "#"}]}}',
    '{"if": {}, "then": {"$ref": "#"}}',
    '{"if": false, "else": {"$ref": "#"}}',
]

# Loops through a keyword that applies its subschema only sometimes: they end for some
# answers (a string, here, for the first), so the schema is taken; an answer on which
# the validation cannot end is "not checked" at the gate.
_LOOPS_THAT_MAY_END = [  # each with an answer on which it does not end
    ('{"anyOf": [{"type": "string"}, {"$ref": "#"}]}', "1"),
    ('{"if": {"type": "string"}, "then": {"allOf": [{"$ref": "#"}]}}', '"x"'),
    ('{"if": {"type": "string"}, "else": {"$ref": "#"}}', "1"),
    ('{"dependentSchemas": {"a": {"$ref": "#"}}}', '{"a": 1}'),
    (
        '{"$schema": "https://json-schema.org/draft/2019-09/schema", "$recursiveAnchor": true,'
        ' "anyOf": [{"type": "string"}, {"$recursiveRef": "#"}]}',
        "1",
    ),
]


@pytest.mark.parametrize(("schema", "endless"), _LOOPS_THAT_MAY_END)
def test_a_loop_some_answers_end_is_taken_and_the_others_not_checked(
    schema: str, endless: str
) -> None:
    assert schema_problem(schema) is None
    passed, reason = _schema_check(schema, endless)
    assert passed and reason.startswith("not checked: validation recursed too deeply"), reason


def test_a_ref_before_draft_2019_is_the_whole_subschema() -> None:
    # Its siblings are not applied, so a loop through them is no loop.
    schema = (
        '{"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"a":'
        ' {"$ref": "#/definitions/b", "allOf": [{"$ref": "#/definitions/a"}]},'
        ' "b": {"type": "string"}}, "properties": {"x": {"$ref": "#/definitions/a"}}}'
    )
    assert schema_problem(schema) is None
    assert _schema_check(schema, '{"x": "abc"}')[0]
    assert not _schema_check(schema, '{"x": 1}')[0]


@pytest.mark.parametrize("schema", _LOOPS)
def test_a_reference_loop_is_refused_on_arrival(schema: str) -> None:
    # A chain of in-place keywords and references back to where it started never
    # descends into the answer: validating any answer against it cannot end.
    problem = schema_problem(schema)
    assert problem is not None and problem.startswith("has a reference loop: "), problem
    assert len(problem) < 400


@pytest.mark.parametrize(
    "schema",
    [
        '{"type": "object", "properties": {"child": {"$ref": "#"}}}',
        '{"type": "array", "items": {"$ref": "#"}}',
        '{"$defs": {"n": {"anyOf": [{"type": "integer"}, {"type": "array",'
        ' "items": {"$ref": "#/$defs/n"}}]}}, "$ref": "#/$defs/n"}',
        '{"additionalProperties": {"allOf": [{"$ref": "#"}]}}',
        '{"then": {"$ref": "#"}}',  # (no "if": "then" is not applied)
        '{"allOf": [{"$ref": "#/$defs/a"}, {"$ref": "#/$defs/a"}], "$defs": {"a": {}}}',
    ],
)
def test_recursion_that_descends_into_the_value_is_accepted(schema: str) -> None:
    assert schema_problem(schema) is None


def test_a_loop_that_reached_the_gate_does_not_fail_the_answer() -> None:
    # (The OpenAI-compatible door may hand it one.) The gate cannot judge: it notes that
    # and passes, rather than failing every tier's answer alike.
    for schema in _LOOPS[:2]:
        passed, reason = _schema_check(schema, "{}")
        assert passed and reason.startswith("not checked: schema has a reference loop"), reason


def test_validation_too_deep_to_finish_is_noted_and_passed() -> None:
    # A recursive schema and an answer nested deeper than Python recurses validating it.
    schema = '{"type": "array", "items": {"$ref": "#"}}'
    passed, reason = _schema_check(schema, "[" * 900 + "]" * 900)
    assert passed and reason.startswith("not checked: validation recursed too deeply"), reason


@pytest.mark.parametrize(
    ("schema", "answer"),
    [
        ('{"$ref": "http://127.0.0.1:9/x.json"}', "{}"),  # unusable
        ('{"type": "nonsense"}', "{}"),  # invalid against its metaschema
        (_exponential(40), "{}"),  # too costly
        ('{"type": "array", "items": {"$ref": "#"}}', "[" * 900 + "]" * 900),  # too deep
        ('{"allOf": [{"$ref": "#"}]}', "{}"),  # a loop
    ],
    ids=["unusable", "metaschema", "costly", "deep", "loop"],
)
def test_every_schema_check_the_gate_cannot_finish_passes_with_a_note(
    schema: str, answer: str
) -> None:
    passed, reason = _schema_check(schema, answer)
    assert passed and reason.startswith("not checked: "), reason


def test_an_answer_nested_deeper_than_python_recurses_is_not_json() -> None:
    verdict = evaluate(
        _request('{"type": "array"}'), Completion("[" * 50_000 + "]" * 50_000), GatePolicy()
    )
    check = next(c for c in verdict.checks if c.name == "json")
    assert not check.passed


def test_validation_still_finds_what_is_wrong() -> None:
    schema = '{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}'
    assert _schema_check(schema, '{"a": "x"}') == (True, "conforms to the schema")
    passed, reason = _schema_check(schema, '{"a": 1}')
    assert not passed and reason.startswith("at a:")
    big = json.dumps([{"a": "x"}] * 500)
    assert _schema_check('{"type": "array", "items": ' + schema + "}", big)[0]


# --- Regular expressions: RE2, never Python's backtracking re -------------------------

# Each takes Python's re exponential time on a line of 30 or so characters that fails it.
_BACKTRACKING = ["^(.|.)*Z$", "(a+)+$", "^(a|aa)*$", "(x+x+)+y", "^(\\w+\\s?)*$"]
_ADVERSARIAL = "a" * 10_000 + "!"
_DRAFTS = [
    "http://json-schema.org/draft-03/schema#",
    "http://json-schema.org/draft-04/schema#",
    "http://json-schema.org/draft-06/schema#",
    "http://json-schema.org/draft-07/schema#",
    "https://json-schema.org/draft/2019-09/schema",
    "https://json-schema.org/draft/2020-12/schema",
]


def _timed_check(schema: dict[str, Any], answer: Any) -> tuple[bool, str]:
    text = json.dumps(schema)
    assert schema_problem(text) is None
    started = time.monotonic()
    result = _schema_check(text, json.dumps(answer))
    assert time.monotonic() - started < 1.0
    return result


@pytest.mark.parametrize("pattern", _BACKTRACKING)
def test_a_backtracking_pattern_takes_linear_time(pattern: str) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string", "pattern": pattern}}}
    passed, reason = _timed_check(schema, {"answer": _ADVERSARIAL})
    assert not passed and reason.startswith("at answer:")


@pytest.mark.parametrize("pattern", _BACKTRACKING)
@pytest.mark.parametrize(
    "schema",
    [
        {"patternProperties": {"PATTERN": {"type": "integer"}}},
        {"patternProperties": {"PATTERN": {}}, "additionalProperties": False},
        {"allOf": [{"patternProperties": {"PATTERN": {}}}], "unevaluatedProperties": False},
        {
            "$schema": "https://json-schema.org/draft/2019-09/schema",
            "allOf": [{"patternProperties": {"PATTERN": {}}}],
            "unevaluatedProperties": False,
        },
    ],
    ids=["patternProperties", "additionalProperties", "unevaluated", "unevaluated-2019"],
)
def test_a_backtracking_property_pattern_takes_linear_time(
    pattern: str, schema: dict[str, Any]
) -> None:
    text = json.dumps(schema).replace("PATTERN", json.dumps(pattern)[1:-1])
    _, reason = _timed_check(json.loads(text), {_ADVERSARIAL: "x"})
    assert "not checked" not in reason  # checked in full, not cut short


@pytest.mark.parametrize("draft", _DRAFTS)
def test_every_dialect_matches_with_re2(draft: str) -> None:
    schema = {
        "$schema": draft,
        "properties": {"s": {"type": "string", "pattern": "^(.|.)*Z$"}},
        "patternProperties": {"^(a+)+$": {"type": "integer"}},
        "additionalProperties": False,
    }
    assert not _timed_check(schema, {"s": _ADVERSARIAL})[0]
    assert not _timed_check(schema, {"a" * 10_000 + "!": 1})[0]
    assert _timed_check(schema, {"s": "xZ", "aaa": 1})[0]


def test_a_subschema_naming_its_dialect_still_matches_with_re2() -> None:
    # jsonschema picks a subschema's validator by its "$schema": the root reached again
    # through "$ref": "#", or a nested subschema naming another draft.
    draft7 = "http://json-schema.org/draft-07/schema#"
    recursive = {
        "$schema": draft7,
        "type": "object",
        "properties": {"child": {"$ref": "#"}, "s": {"type": "string", "pattern": "(a+)+$"}},
    }
    passed, reason = _timed_check(recursive, {"child": {"child": {"s": _ADVERSARIAL}}})
    assert not passed and reason.startswith("at child/child/s:")
    nested = {"properties": {"s": {"$schema": draft7, "pattern": "^(.|.)*Z$"}}}
    assert not _timed_check(nested, {"s": _ADVERSARIAL})[0]


class _NoRe:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"jsonschema called re.{name} on a caller's pattern")


def test_the_gate_never_hands_a_pattern_to_python_re(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (jsonschema._keywords, jsonschema._utils, jsonschema._legacy_keywords):
        monkeypatch.setattr(module, "re", _NoRe())
    for draft in _DRAFTS:
        schema = {
            "$schema": draft,
            "properties": {"s": {"pattern": "^x"}, "o": {"$ref": "#"}},
            "patternProperties": {"^p": {"type": "integer"}},
            "additionalProperties": False,
            "allOf": [{"patternProperties": {"^q": {}}}],
            "unevaluatedProperties": False,
        }
        answer = {"s": "y", "p1": "no", "q": 1, "z": 1, "o": {"s": "x", "p": 1}}
        assert not _timed_check(schema, answer)[0]


# Ordinary patterns: the gate finds exactly what jsonschema itself (with re) finds.
_ORDINARY: list[tuple[dict[str, Any], list[Any]]] = [
    (
        {"properties": {"id": {"pattern": "^[0-9a-f]{8}$"}, "name": {"pattern": "[A-Z]"}}},
        [{"id": "0123abcd", "name": "Ann"}, {"id": "0123abc", "name": "ann"}, {"id": 5}],
    ),
    (
        {"patternProperties": {"^x_": {"type": "integer"}, "_n$": {"minimum": 0}}},
        [{"x_a": 1, "b_n": 2}, {"x_a": "1"}, {"x_n": -1}, {"y": "anything"}],
    ),
    (
        {
            "properties": {"a": {}},
            "patternProperties": {"^x_": {"type": "integer"}, "^y\\d+$": {}},
            "additionalProperties": False,
        },
        [{"a": 1, "x_1": 2, "y12": 0}, {"b": 1}, {"b": 1, "c": 2, "x_": "s"}, {"y1a": 0}],
    ),
    (
        {"patternProperties": {"^x_": {}}, "additionalProperties": {"type": "string"}},
        [{"x_a": 1, "other": "s"}, {"other": 1}],
    ),
    (
        {"properties": {"a": {}}, "additionalProperties": False},
        [{"a": 1}, {"a": 1, "b": 2, "c": 3}],
    ),
    (
        {
            "allOf": [{"patternProperties": {"^k": {}}}],
            "properties": {"a": {}},
            "unevaluatedProperties": False,
        },
        [{"a": 1, "k1": 2}, {"a": 1, "z": 2}],
    ),
    (
        {
            "if": {"patternProperties": {"^t": {"type": "string"}}},
            "then": {"patternProperties": {"^u": {}}},
            "else": {"properties": {"e": {}}},
            "dependentSchemas": {"d": {"patternProperties": {"^w": {}}}},
            "unevaluatedProperties": {"type": "integer"},
        },
        [{"t": "s", "u": "x", "v": 1}, {"t": 1, "u": "x", "e": "y"}, {"d": 1, "w": "x", "z": "q"}],
    ),
    (
        {
            "$schema": "https://json-schema.org/draft/2019-09/schema",
            "anyOf": [{"patternProperties": {"^k": {}}}, {"properties": {"a": {}}}],
            "unevaluatedProperties": False,
        },
        [{"k": 1, "a": 2}, {"k": 1, "z": 2}],
    ),
    (
        {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "patternProperties": {"^[a-z]+$": {"type": "string"}},
            "additionalProperties": False,
        },
        [{"abc": "x"}, {"abc": 1}, {"ABC": "x"}],
    ),
]


def _findings(validator: jsonschema.protocols.Validator, instance: Any) -> list[tuple[str, str]]:
    return sorted(
        ("/".join(map(str, e.absolute_path)), e.message) for e in validator.iter_errors(instance)
    )


@pytest.mark.parametrize(("schema", "instances"), _ORDINARY)
def test_ordinary_patterns_validate_as_jsonschema_does(
    schema: dict[str, Any], instances: list[Any]
) -> None:
    ours = gate._validator(json.dumps(schema))
    assert not isinstance(ours, str), ours
    theirs = jsonschema.validators.validator_for(schema)(schema)
    assert type(ours) is not type(theirs)
    for instance in instances:
        assert _findings(ours, instance) == _findings(theirs, instance), instance


def test_patterns_are_re2_syntax() -> None:
    # RE2 has what Python's re lacks (Unicode classes): such a pattern is usable.
    schema = {"properties": {"name": {"pattern": "^\\p{Lu}\\p{Ll}+$"}}}
    assert _timed_check(schema, {"name": "Émile"}) == (True, "conforms to the schema")
    assert not _timed_check(schema, {"name": "émile"})[0]


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ({"pattern": "(?=x)"}, "pattern '(?=x)' is not supported: patterns use RE2 syntax"),
        ({"pattern": "a(?!b)"}, "pattern 'a(?!b)' is not supported"),
        ({"pattern": "(?<=a)b"}, "pattern '(?<=a)b' is not supported"),
        ({"properties": {"a": {"pattern": "(a)\\1"}}}, "pattern '(a)\\\\1' is not supported"),
        ({"patternProperties": {"^(?=k)": {}}}, "pattern '^(?=k)' is not supported"),
        ({"$defs": {"x": {"items": {"pattern": "(?<n>a)\\k<n>"}}}}, "is not supported"),
        ({"pattern": "\\pL{100}"}, "is too large"),
        ({"pattern": "\ud800"}, "not valid Unicode text: a string has a lone surrogate"),
        # (A reference may point anywhere in the schema, its data too.)
        (
            {"const": {"patternProperties": {f"^x{i}$": 0 for i in range(300)}}},
            "more than 256 distinct",
        ),
        ({"anyOf": [{"pattern": f"^.{{1,999}}{i}$"} for i in range(10)]}, "too large together"),
    ],
)
def test_a_pattern_re2_cannot_use_is_refused_by_name(schema: dict[str, Any], says: str) -> None:
    problem = schema_problem(json.dumps(schema))
    assert problem is not None and says in problem, problem
    assert len(problem) < 300


def test_a_match_too_costly_to_run_is_not_checked() -> None:
    # RE2's time is the text's length times the pattern's compiled size: a large pattern
    # on a long string (here ~1,000 instructions x 30,000 bytes) is not run at all.
    schema = {"items": {"type": "string", "pattern": "a[ab]{999}Z"}}
    passed, reason = _timed_check(schema, ["ab" * 15_000])
    assert passed and reason.startswith("not checked: ") and "costs too much" in reason
    assert _timed_check(schema, ["a" + "b" * 999 + "Z"])[0]
