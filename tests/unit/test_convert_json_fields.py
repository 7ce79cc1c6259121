"""The request's JSON fields (tool schemas, tool call arguments, the response schema) and
the cost ceiling are refused on arrival, by field, wherever a provider would refuse them
or the adapters could not send them: strict JSON, bounded depth, no "$-0" ceiling."""

from __future__ import annotations

import math

import orjson
import pytest

from quorum.route.v1 import types_pb2 as pb
from quorum.server.catalog import build_catalog
from quorum.server.config import parse_config
from quorum.server.domain import RouteRequest
from quorum.server.errors import InvalidRequest
from quorum.server.names import MAX_JSON_DEPTH, json_object_problem, nests_deeper
from quorum.server.service.convert import route_request_from_pb
from tests.conftest import sim_config

CATALOG = build_catalog(parse_config(sim_config()))


def _convert(request: pb.RouteRequest) -> RouteRequest:
    return route_request_from_pb(
        request, catalog=CATALOG, use_cases={}, max_messages=100, max_request_bytes=10_000_000
    )


def _violations(request: pb.RouteRequest) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as info:
        _convert(request)
    return {v.field: v.description for v in info.value.violations}


def _asking() -> pb.RouteRequest:
    return pb.RouteRequest(messages=[pb.Message(role=pb.ROLE_USER, content="Weather in Paris?")])


def _nested_properties(levels: int) -> str:
    """A tool schema whose properties nest ``levels`` deep (2 JSON levels each)."""
    return '{"type":"object","properties":{"a":' * levels + "{}" + "}}" * levels


def _with_tool(parameters_json: str) -> pb.RouteRequest:
    request = _asking()
    request.params.tools.add(name="get_weather", parameters_json=parameters_json)
    return request


def _with_call(arguments_json: str) -> pb.RouteRequest:
    request = _with_tool('{"type": "object"}')
    request.messages.add(
        role=pb.ROLE_ASSISTANT,
        tool_calls=[pb.ToolCall(id="c1", name="get_weather", arguments_json=arguments_json)],
    )
    request.messages.add(role=pb.ROLE_TOOL, tool_call_id="c1", content="sunny")
    return request


# ---- depth -------------------------------------------------------------------------


def test_the_depth_bound_leaves_room_for_the_adapters_encoder() -> None:
    # orjson (every adapter's encoder) refuses more than 255 levels; a request body wraps
    # the tool's JSON in a few of its own. The bound leaves far more than that room.
    deep = orjson.loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    envelope = {"messages": [{"content": [{"input": {"nested": deep}}]}]}
    assert orjson.dumps(envelope)
    assert MAX_JSON_DEPTH <= 100


@pytest.mark.parametrize("levels", [126, 200])
def test_a_tool_schema_nested_too_deep_is_refused_by_field(levels: int) -> None:
    found = _violations(_with_tool(_nested_properties(levels)))
    too_deep = f"nests objects and arrays more than {MAX_JSON_DEPTH} deep"
    assert found == {"params.tools[0].parameters_json": too_deep}


def test_tool_call_arguments_nested_too_deep_are_refused_by_field() -> None:
    found = _violations(_with_call('{"a":' * 600 + "1" + "}" * 600))
    too_deep = f"nests objects and arrays more than {MAX_JSON_DEPTH} deep"
    assert found == {"messages[1].tool_calls[0].arguments_json": too_deep}


def test_json_deeper_than_orjson_parses_is_named_as_too_deep() -> None:
    found = _violations(_with_call('{"a":' * 2000 + "1" + "}" * 2000))
    assert found["messages[1].tool_calls[0].arguments_json"].startswith("nests objects")


def test_a_real_tools_depth_is_accepted() -> None:
    # 31 levels of properties (63 JSON levels with the root) is far deeper than any tool.
    assert _convert(_with_tool(_nested_properties(31)))
    levels = MAX_JSON_DEPTH - 1
    assert _convert(_with_call('{"a":' * levels + "[1]" + "}" * levels))


def test_depth_counts_containers_only_and_needs_no_recursion() -> None:
    assert not nests_deeper({}, 1) and nests_deeper({"a": []}, 1)
    assert not nests_deeper({"a": [1, "[[[", {"b": None}]}, 3)
    assert nests_deeper({"a": [1, {"b": []}]}, 3)
    # Far deeper than Python recurses: a walk level by level.
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    assert nests_deeper(deep, 64)


def test_brackets_inside_strings_do_not_count() -> None:
    text = '{"pattern": "' + "[{" * 200 + '"}'
    assert json_object_problem(text, "a JSON object") == ""


# ---- strict JSON -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ('{"type": "number", "maximum": NaN}', "NaN, Infinity and -Infinity are not JSON"),
        ('{"type": "number", "maximum": Infinity}', "NaN, Infinity and -Infinity are not JSON"),
        ('{"type": "number", "maximum": 1e999}', "has a number out of range"),
        ('{"maximum": ' + "9" * 5000 + "}", "has a number out of range"),
    ],
    ids=["nan", "inf", "1e999", "5000-digits"],
)
def test_a_response_schema_is_strict_json(schema: str, says: str) -> None:
    request = _asking()
    request.params.response_format.type = pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    request.params.response_format.json_schema = schema
    found = _violations(request)
    assert says in found["params.response_format.json_schema"], found
    # The tools' schemas are held to the same strictness.
    found = _violations(_with_tool(schema))
    assert says in found["params.tools[0].parameters_json"], found


def test_a_response_schema_that_loops_is_refused_by_field() -> None:
    request = _asking()
    request.params.response_format.type = pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    request.params.response_format.json_schema = '{"allOf": [{"$ref": "#"}]}'
    found = _violations(request)
    assert found["params.response_format.json_schema"].startswith("has a reference loop: ")


def test_a_misshapen_response_schema_is_named_in_words() -> None:
    request = _asking()
    request.params.response_format.type = pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    request.params.response_format.json_schema = '{"type": "object", "properties": [1, 2]}'
    found = _violations(request)["params.response_format.json_schema"]
    assert found == (
        "is not a usable JSON Schema: at (root): properties must be an object of subschemas,"
        " not an array"
    )
    assert "Error" not in found


# ---- the cost ceiling --------------------------------------------------------------


def test_a_negative_zero_ceiling_is_the_zero_ceiling() -> None:
    request = _asking()
    request.hints.max_cost_usd = -0.0
    ceiling = _convert(request).hints.max_cost_usd
    assert ceiling is not None and ceiling == 0.0 and math.copysign(1.0, ceiling) == 1.0
    assert f"${ceiling:.6f}" == "$0.000000"


def test_an_unset_ceiling_stays_unset() -> None:
    assert _convert(_asking()).hints.max_cost_usd is None
