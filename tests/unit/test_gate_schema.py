"""A caller's JSON Schema: checked when the request arrives, never fetched from anywhere,
and never an exception (or an unbounded amount of work) when the gate validates an answer."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import jsonschema
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
        ('{"type": "nonsense"}', "is not a valid JSON Schema: at type"),
        ('{"required": "a"}', "is not a valid JSON Schema"),
        ('{"pattern": "("}', "is not a valid JSON Schema"),
        ('{"$schema": ["x"]}', "$schema must be a string"),
        ("[1]", "must be a JSON object"),
        ("{bad", "must be a JSON object"),
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
    assert not passed and "not checked" in reason


def test_an_unusable_schema_that_reached_the_gate_is_noted() -> None:
    # (The OpenAI-compatible door may hand it one; the gRPC door refuses it first.)
    passed, reason = _schema_check('{"$ref": "http://127.0.0.1:9/x.json"}', "{}")
    assert passed and "not checked" in reason


def test_exponential_references_are_cut_short() -> None:
    schema = _exponential(40)
    assert schema_problem(schema) is None  # small and self-contained
    started = time.monotonic()
    passed, reason = _schema_check(schema, "{}")
    assert not passed and "costs too much" in reason
    assert time.monotonic() - started < 2.0


def test_a_reference_loop_is_a_failed_check() -> None:
    schema = (
        '{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}'
    )
    passed, reason = _schema_check(schema, "{}")
    assert not passed and "recursed" in reason


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
