"""Bad input gets INVALID_ARGUMENT naming the field, and never harms the server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from aiohttp import web

from quorum.client import QuorumError
from quorum.route.v1 import route_service_pb2 as svc
from quorum.route.v1 import types_pb2 as pb
from quorum.server.config import parse_config
from tests.conftest import running_server, sim_config


def _ok() -> pb.RouteRequest:
    return pb.RouteRequest(messages=[pb.Message(role=pb.ROLE_USER, content="hello")])


def _mutate(fn: Callable[[pb.RouteRequest], object]) -> pb.RouteRequest:
    request = _ok()
    fn(request)
    return request


def _turns(*messages: pb.Message, tools: tuple[str, ...] = ()) -> pb.RouteRequest:
    """A conversation with tool turns (after the first user message)."""
    request = _ok()
    request.messages.extend(messages)
    for name in tools:
        request.params.tools.add(name=name)
    return request


_CALL = pb.ToolCall(id="c1", name="get_weather", arguments_json="{}")
_ASKED = pb.Message(role=pb.ROLE_ASSISTANT, tool_calls=[_CALL])
_ANSWERED = pb.Message(role=pb.ROLE_TOOL, content="18C", tool_call_id="c1")


def _calls(*calls: tuple[str, ...]) -> pb.Message:
    """An assistant message making these calls: (id, name) or (id, name, arguments)."""
    made = [pb.ToolCall(id=c[0], name=c[1], arguments_json=(c[2:] or ("{}",))[0]) for c in calls]
    return pb.Message(role=pb.ROLE_ASSISTANT, tool_calls=made)


def _answer(call_id: str) -> pb.Message:
    return pb.Message(role=pb.ROLE_TOOL, content="18C", tool_call_id=call_id)


def _with_image(role: int, tool_call_id: str = "") -> pb.Message:
    part = pb.ContentPart(image=pb.ImagePart(url="https://example.com/cat.png"))
    return pb.Message(role=role, parts=[part], tool_call_id=tool_call_id)  # type: ignore[arg-type]


def _tool_choice(mode: int = 0, tool_name: str = "") -> pb.RouteRequest:
    """A request offering tool ``t``, with this tool choice."""
    request = _ok()
    request.params.tools.add(name="t")
    request.params.tool_choice.mode = mode  # type: ignore[assignment]
    request.params.tool_choice.tool_name = tool_name
    return request


def _image(url: str = "", media_type: str = "") -> pb.RouteRequest:
    part = pb.ContentPart(image=pb.ImagePart(url=url, media_type=media_type))
    return pb.RouteRequest(messages=[pb.Message(role=pb.ROLE_USER, parts=[part])])


def _schema(schema: str, strategy: int = 0) -> pb.RouteRequest:
    request = _ok()
    request.params.response_format.type = pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    request.params.response_format.json_schema = schema
    request.hints.strategy = strategy  # type: ignore[assignment]
    return request


CASES: list[tuple[str, pb.RouteRequest, str]] = [
    ("no messages", pb.RouteRequest(), "messages"),
    ("role unspecified", pb.RouteRequest(messages=[pb.Message(content="x")]), "messages[0].role"),
    (
        "unknown role value",
        pb.RouteRequest(messages=[pb.Message(role=99, content="x")]),  # type: ignore[arg-type]
        "messages[0].role",
    ),
    (
        "empty content",
        pb.RouteRequest(messages=[pb.Message(role=pb.ROLE_USER)]),
        "messages[0].content",
    ),
    (
        "tool without id",
        pb.RouteRequest(messages=[pb.Message(role=pb.ROLE_TOOL, content="4")]),
        "messages[0].tool_call_id",
    ),
    (
        "negative cost ceiling",
        _mutate(lambda r: setattr(r.hints, "max_cost_usd", -1.0)),
        "hints.max_cost_usd",
    ),
    (
        "nan cost ceiling",
        _mutate(lambda r: setattr(r.hints, "max_cost_usd", float("nan"))),
        "hints.max_cost_usd",
    ),
    ("unknown model", _mutate(lambda r: setattr(r.hints, "model", "gpt-9")), "hints.model"),
    ("unknown tier", _mutate(lambda r: setattr(r.hints, "tier", "gold")), "hints.tier"),
    (
        "unknown use case",
        _mutate(lambda r: setattr(r.hints, "use_case", "poetry")),
        "hints.use_case",
    ),
    (
        "unknown strategy value",
        _mutate(lambda r: setattr(r.hints, "strategy", 42)),
        "hints.strategy",
    ),
    (
        "unknown priority value",
        _mutate(lambda r: setattr(r.hints, "priority", 7)),
        "hints.priority",
    ),
    (
        "unspecified capability",
        _mutate(lambda r: r.hints.required_capabilities.append(pb.CAPABILITY_UNSPECIFIED)),
        "hints.required_capabilities[0]",
    ),
    (
        "temperature too high",
        _mutate(lambda r: setattr(r.params, "temperature", 3.5)),
        "params.temperature",
    ),
    ("top_p zero", _mutate(lambda r: setattr(r.params, "top_p", 0.0)), "params.top_p"),
    (
        "schema missing",
        _mutate(
            lambda r: setattr(r.params.response_format, "type", pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA)
        ),
        "params.response_format.json_schema",
    ),
    (
        "a tool result that answers no call",
        _turns(pb.Message(role=pb.ROLE_TOOL, content="18C", tool_call_id="c9")),
        "messages[1].tool_call_id",
    ),
    (
        "a tool result before its call",
        _turns(_ANSWERED, _ASKED),
        "messages[1].tool_call_id",
    ),
    (
        "tool calls on a user message",
        _turns(pb.Message(role=pb.ROLE_USER, tool_calls=[_CALL])),
        "messages[1].tool_calls",
    ),
    (
        "a tool call without an id",
        _turns(pb.Message(role=pb.ROLE_ASSISTANT, tool_calls=[pb.ToolCall(name="get_weather")])),
        "messages[1].tool_calls[0].id",
    ),
    (
        "a call of a tool the request does not define",
        _turns(_ASKED, _ANSWERED, tools=("get_tide",)),
        "messages[1].tool_calls[0].name",
    ),
    (
        "a tool call no tool message answers before the next user message",
        _turns(_ASKED, pb.Message(role=pb.ROLE_USER, content="and?")),
        "messages[1].tool_calls[0].id",
    ),
    (
        "a system message between a tool call and its result",
        _turns(_ASKED, pb.Message(role=pb.ROLE_SYSTEM, content="Be brief."), _ANSWERED),
        "messages[1].tool_calls[0].id",
    ),
    ("a tool call left unanswered at the end", _turns(_ASKED), "messages[1].tool_calls[0].id"),
    (
        "one of two parallel tool calls unanswered",
        _turns(_calls(("c1", "get_weather"), ("c2", "get_weather")), _ANSWERED),
        "messages[1].tool_calls[1].id",
    ),
    (
        "a tool result that answers a call of an earlier turn",
        _turns(_ASKED, _ANSWERED, pb.Message(role=pb.ROLE_USER, content="more"), _ANSWERED),
        "messages[4].tool_call_id",
    ),
    (
        "a tool call answered twice",
        _turns(_ASKED, _ANSWERED, _ANSWERED),
        "messages[3].tool_call_id",
    ),
    (
        "a duplicate tool call id in one message",
        _turns(_calls(("c1", "get_weather"), ("c1", "get_tide")), _ANSWERED),
        "messages[1].tool_calls[1].id",
    ),
    (
        "a tool call id used again in a later turn",
        _turns(_ASKED, _ANSWERED, _ASKED, _ANSWERED),
        "messages[3].tool_calls[0].id",
    ),
    (
        "a tool call name that is no tool name (no tools declared)",
        _turns(_calls(("c1", "погода")), _ANSWERED),
        "messages[1].tool_calls[0].name",
    ),
    (
        "a tool call name with a newline",
        _turns(_calls(("c1", "get_weather\n")), _ANSWERED),
        "messages[1].tool_calls[0].name",
    ),
    (
        "a tool call id with a NUL",
        _turns(_calls(("c\x001", "get_weather")), _answer("c\x001")),
        "messages[1].tool_calls[0].id",
    ),
    (
        "a tool call id with a newline",
        _turns(_calls(("c1\n", "get_weather")), _answer("c1\n")),
        "messages[1].tool_calls[0].id",
    ),
    (
        "a tool result id with a NUL",
        _turns(_calls(("c\x00", "get_weather")), _answer("c\x00")),
        "messages[2].tool_call_id",
    ),
    (
        "tool call arguments with NaN",
        _turns(_calls(("c1", "get_weather", '{"a": NaN}')), _ANSWERED),
        "messages[1].tool_calls[0].arguments_json",
    ),
    (
        "tool call arguments with -Infinity",
        _turns(_calls(("c1", "get_weather", '{"a": -Infinity}')), _ANSWERED),
        "messages[1].tool_calls[0].arguments_json",
    ),
    (
        "tool call arguments with a number beyond a double",
        _turns(_calls(("c1", "get_weather", '{"a": 1e999}')), _ANSWERED),
        "messages[1].tool_calls[0].arguments_json",
    ),
    (
        "a tool schema with Infinity",
        _mutate(lambda r: r.params.tools.add(name="t", parameters_json='{"maximum": Infinity}')),
        "params.tools[0].parameters_json",
    ),
    (
        "an image on a system message",
        pb.RouteRequest(messages=[_with_image(pb.ROLE_SYSTEM), _ok().messages[0]]),
        "messages[0].parts[0].image",
    ),
    (
        "an image on an assistant message",
        _turns(_with_image(pb.ROLE_ASSISTANT), pb.Message(role=pb.ROLE_USER, content="so?")),
        "messages[1].parts[0].image",
    ),
    (
        "an image on a tool message",
        _turns(_ASKED, _with_image(pb.ROLE_TOOL, tool_call_id="c1")),
        "messages[2].parts[0].image",
    ),
    (
        "an https image URL with a NUL",
        _image(url="https://example.com/a\x00.png"),
        "messages[0].parts[0].image.url",
    ),
    (
        "an https image URL with a newline",
        _image(url="https://example.com/a.png\nHost: evil"),
        "messages[0].parts[0].image.url",
    ),
    (
        "an https image URL with a space",
        _image(url="https://example.com/a b.png"),
        "messages[0].parts[0].image.url",
    ),
    (
        "an empty text part",
        _turns(pb.Message(role=pb.ROLE_USER, parts=[pb.ContentPart(text="")])),
        "messages[1].parts[0].text",
    ),
    (
        "a vote of one",
        _mutate(lambda r: setattr(r.hints, "consensus_size", 1)),
        "hints.consensus_size",
    ),
    (
        "schema name with a newline",
        _mutate(lambda r: setattr(r.params.response_format, "schema_name", "x\n")),
        "params.response_format.schema_name",
    ),
    (
        "bad tool name",
        _mutate(lambda r: r.params.tools.add(name="no spaces allowed")),
        "params.tools[0].name",
    ),
    (
        "bad tool schema",
        _mutate(lambda r: r.params.tools.add(name="t", parameters_json="[1]")),
        "params.tools[0].parameters_json",
    ),
    (
        "tool choice names no tool",
        _tool_choice(pb.TOOL_CHOICE_MODE_TOOL),
        "params.tool_choice.tool_name",
    ),
    (
        "tool choice names an unknown tool",
        _tool_choice(pb.TOOL_CHOICE_MODE_TOOL, "u"),
        "params.tool_choice.tool_name",
    ),
    ("tool name without the tool mode", _tool_choice(0, "t"), "params.tool_choice.tool_name"),
    (
        "tool call required without tools",
        _mutate(lambda r: setattr(r.params.tool_choice, "mode", pb.TOOL_CHOICE_MODE_REQUIRED)),
        "params.tool_choice.mode",
    ),
    (
        "unknown tool choice mode",
        _mutate(lambda r: setattr(r.params.tool_choice, "mode", 9)),
        "params.tool_choice.mode",
    ),
    ("bad request id", _mutate(lambda r: setattr(r, "request_id", "has spaces")), "request_id"),
    # A trailing newline is not part of a name (``$`` would have let it through).
    (
        "request id with a newline",
        _mutate(lambda r: setattr(r, "request_id", "abc\n")),
        "request_id",
    ),
    ("tenant with a newline", _mutate(lambda r: setattr(r, "tenant", "acme\n")), "tenant"),
    ("task with a newline", _mutate(lambda r: setattr(r.hints, "task", "code\n")), "hints.task"),
    (
        "agent with a newline",
        _mutate(lambda r: setattr(r.hints, "agent", "email_assistant\n")),
        "hints.agent",
    ),
    (
        "tool name with a newline",
        _mutate(lambda r: r.params.tools.add(name="abc\n")),
        "params.tools[0].name",
    ),
    (
        "image without source",
        pb.RouteRequest(
            messages=[pb.Message(role=pb.ROLE_USER, parts=[pb.ContentPart(image=pb.ImagePart())])]
        ),
        "messages[0].parts[0].image",
    ),
    (
        "oversized",
        pb.RouteRequest(messages=[pb.Message(role=pb.ROLE_USER, content="x" * 5_000_000)]),
        "messages",
    ),
    (
        "image over plain http",
        _image(url="http://example.com/cat.png"),
        "messages[0].parts[0].image.url",
    ),
    (
        "image data URL of a type no model takes",
        _image(url="data:image/tiff;base64,AAAA"),
        "messages[0].parts[0].image.url",
    ),
    (
        "image data URL whose payload is not base64",
        _image(url="data:image/png;base64,!!!notb64"),
        "messages[0].parts[0].image.url",
    ),
    (
        "image data URL that is not base64-encoded",
        _image(url="data:image/png,%89PNG"),
        "messages[0].parts[0].image.url",
    ),
    (
        "image URL with a media type that is not an image's",
        _image(url="https://example.com/cat.png", media_type="text/html"),
        "messages[0].parts[0].image.media_type",
    ),
    (
        "author name with a newline",
        _mutate(lambda r: setattr(r.messages[0], "name", "has spaces and\nnewline")),
        "messages[0].name",
    ),
    (
        "author name too long",
        _mutate(lambda r: setattr(r.messages[0], "name", "n" * 65)),
        "messages[0].name",
    ),
    (
        "a tool call id on a user message",
        _mutate(lambda r: setattr(r.messages[0], "tool_call_id", "c1")),
        "messages[0].tool_call_id",
    ),
    (
        "schema reference that goes nowhere",
        _schema('{"$ref": "#/definitions/missing"}'),
        "params.response_format.json_schema",
    ),
    (
        "schema reference to a URL",
        _schema('{"$ref": "https://example.com/schema.json"}'),
        "params.response_format.json_schema",
    ),
    (
        "schema pattern with a lookahead (not RE2)",
        _schema('{"properties": {"a": {"type": "string", "pattern": "^(?=x)"}}}'),
        "params.response_format.json_schema",
    ),
    (
        "schema property pattern with a backreference (not RE2)",
        _schema('{"patternProperties": {"(a)\\\\1": {}}}'),
        "params.response_format.json_schema",
    ),
    # Validating an answer against a reference loop never ends: the gate could never
    # check it, and would escalate every cascade through every tier.
    (
        "schema reference that loops back to itself",
        _schema('{"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}', 3),
        "params.response_format.json_schema",
    ),
    (
        "schema that applies itself in place",
        _schema('{"allOf": [{"$ref": "#"}]}', 3),
        "params.response_format.json_schema",
    ),
    # The providers' parsers are strict: they would refuse these, naming no field.
    (
        "schema with NaN",
        _schema('{"type": "number", "maximum": NaN}'),
        "params.response_format.json_schema",
    ),
    (
        "schema with Infinity",
        _schema('{"type": "number", "maximum": Infinity}'),
        "params.response_format.json_schema",
    ),
    (
        "schema with a number beyond a double",
        _schema('{"type": "number", "maximum": 1e999}'),
        "params.response_format.json_schema",
    ),
    (
        "schema whose properties are not an object",
        _schema('{"type": "object", "properties": [1, 2]}'),
        "params.response_format.json_schema",
    ),
    # orjson, every adapter's encoder, refuses more than 255 levels, the request body's own
    # included: these would fail at every provider.
    (
        "a tool schema nested 126 levels deep",
        _mutate(
            lambda r: r.params.tools.add(
                name="t",
                parameters_json='{"type":"object","properties":{"a":' * 126 + "{}" + "}}" * 126,
            )
        ),
        "params.tools[0].parameters_json",
    ),
    (
        "tool call arguments nested 600 deep",
        _turns(_calls(("c1", "get_weather", '{"a":' * 600 + "1" + "}" * 600)), _ANSWERED),
        "messages[1].tool_calls[0].arguments_json",
    ),
]


@pytest.mark.parametrize(("name", "request_msg", "field"), CASES, ids=[c[0] for c in CASES])
async def test_bad_route_request(name: str, request_msg: pb.RouteRequest, field: str) -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.route(request_msg)
        err = info.value
        assert err.code is grpc.StatusCode.INVALID_ARGUMENT, err
        assert err.reason == "INVALID_REQUEST"
        assert field in [v.field for v in err.field_violations], err.field_violations
        # The server is unharmed.
        assert (await client.route("hello")).content


async def test_a_number_out_of_range_is_named_as_such() -> None:
    # 5000 digits: no JSON parser of the providers' takes it (nor Python's, past 4300).
    arguments = '{"a": ' + "9" * 5000 + "}"
    request = _turns(_calls(("c1", "get_weather", arguments)), _ANSWERED)
    async with running_server(parse_config(sim_config())) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.route(request)
        with pytest.raises(QuorumError) as nan:
            await client.route(_turns(_calls(("c1", "f", '{"a": NaN}')), _ANSWERED))
    by_field = {v.field: v.description for v in info.value.field_violations}
    assert by_field["messages[1].tool_calls[0].arguments_json"].startswith(
        "has a number out of range"
    )
    assert "NaN" in nan.value.field_violations[0].description


async def test_a_schema_problem_is_said_in_words() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.route(_schema('{"type": "object", "properties": [1, 2]}'))
        with pytest.raises(QuorumError) as big:
            await client.route(_schema('{"maximum": ' + "9" * 5000 + "}"))
    (misshapen,) = info.value.field_violations
    assert misshapen.description == (
        "is not a usable JSON Schema: at (root): properties must be an object of subschemas,"
        " not an array"
    )
    (number,) = big.value.field_violations
    assert number.description.startswith("has a number out of range")


async def test_a_negative_zero_ceiling_is_the_zero_ceiling() -> None:
    # 0 is a ceiling of $0 (unset is none): -0.0 is the same, and is never shown as "$-0".
    said: list[str] = []
    async with running_server(parse_config(sim_config())) as (_, client):
        for ceiling in (0.0, -0.0):
            request = _ok()
            request.hints.max_cost_usd = ceiling
            with pytest.raises(QuorumError) as info:
                await client.plan(request)
            assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION
            said.append(info.value.message)
    assert said[0] == said[1] and "$-0" not in said[1] and "$0.000000" in said[1], said


async def test_well_formed_tool_turns_are_accepted() -> None:
    request = _turns(
        _calls(("c1", "get_weather"), ("c2", "get_tide", '{"n": 123456789012345678901234567890}')),
        _answer("c2"),  # parallel calls are answered in any order
        _answer("c1"),
        pb.Message(role=pb.ROLE_ASSISTANT, content="Sunny, high tide at noon."),
        pb.Message(role=pb.ROLE_USER, content="And tomorrow?"),
        _calls(("c3", "get_weather")),
        _answer("c3"),
        pb.Message(role=pb.ROLE_SYSTEM, content="Answer briefly."),
        pb.Message(role=pb.ROLE_USER, parts=[pb.ContentPart(text="See:"), _IMAGE, _DATA_IMAGE]),
        tools=("get_weather", "get_tide"),
    )
    async with running_server(parse_config(sim_config())) as (_, client):
        assert (await client.route(request)).content


_IMAGE = pb.ContentPart(image=pb.ImagePart(url="https://example.com/a%20b.png?q=1&r=%0A"))
_DATA_IMAGE = pb.ContentPart(image=pb.ImagePart(url="data:image/png;base64,iVBORw0KGgo="))


async def test_plan_prefixes_field_paths() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.plan(pb.RouteRequest())
    assert [v.field for v in info.value.field_violations] == ["request.messages"]


async def test_every_violation_is_reported_at_once() -> None:
    request = pb.RouteRequest(messages=[pb.Message(content="x")])
    request.hints.max_cost_usd = -2
    request.hints.tier = "gold"
    async with running_server(parse_config(sim_config())) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.route(request)
    fields = {v.field for v in info.value.field_violations}
    assert fields == {"messages[0].role", "hints.max_cost_usd", "hints.tier"}


async def test_garbage_bytes_do_not_crash_the_server() -> None:
    async with running_server(parse_config(sim_config())) as (running, client):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            raw = channel.unary_unary("/quorum.route.v1.RouteService/Route", None, None)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await raw(b"\xff\xff\xff\x00garbage")
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            unknown = channel.unary_unary("/quorum.route.v1.RouteService/Nope", None, None)
            with pytest.raises(grpc.aio.AioRpcError) as info2:
                await unknown(b"")
            assert info2.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert (await client.route("hello")).content
        assert (await client.list_models(tier="")).models
        with pytest.raises(QuorumError):
            await client.feedback(svc.FeedbackRequest())


async def test_feedback_request_id_is_a_whole_name() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.feedback(
                svc.FeedbackRequest(request_id="abc\n", kind=svc.FEEDBACK_KIND_THUMBS_UP)
            )
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in info.value.field_violations] == ["request_id"]


async def test_a_string_that_is_not_utf8_is_named() -> None:
    # protobuf refuses the whole message; the caller is told which field it was.
    route = pb.RouteRequest(
        messages=[pb.Message(role=pb.ROLE_USER, content="hi"), _message_with("XXXX")]
    )
    stream = svc.RouteStreamRequest(request=route)
    async with running_server(parse_config(sim_config())) as (running, _):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            for method, message in (("Route", route), ("RouteStream", stream)):
                data = message.SerializeToString().replace(b"XXXX", b"X\xffXX")
                if method == "Route":
                    call: Any = channel.unary_unary(
                        f"/quorum.route.v1.RouteService/{method}", None, None
                    )
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await call(data)
                else:
                    call = channel.unary_stream(
                        f"/quorum.route.v1.RouteService/{method}", None, None
                    )
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        async for _ in call(data):
                            pass
                prefix = "request." if method == "RouteStream" else ""
                assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert info.value.details() == (
                    f"invalid request: {prefix}messages[1].content: is not valid UTF-8"
                )


def _message_with(content: str) -> pb.Message:
    return pb.Message(role=pb.ROLE_USER, content=content)


async def test_unknown_names_are_not_answered_with_the_configured_ones() -> None:
    # A tenant may not be allowed to see every model, agent or use case.
    hints = pb.RoutingHints(model="secret", agent="nobody", use_case="nothing")
    async with running_server(parse_config(sim_config())) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.route("hello", hints=hints)
    text = " ".join(v.description for v in info.value.field_violations)
    assert [v.field for v in info.value.field_violations] == [
        "hints.model",
        "hints.use_case",
        "hints.agent",
    ]
    assert not any(name in text for name in ("flash", "mid", "frontier"))


async def test_a_name_violation_states_the_rule_it_breaks() -> None:
    # "_anonymous" is letters and "_", so "1-64 letters, digits or _.:/-" alone would
    # describe it: the message must also say a name starts with a letter or digit.
    rule = "must be 1-64 letters, digits or _.:/-, starting with a letter or digit"
    request = _mutate(lambda r: setattr(r, "tenant", "_anonymous"))
    request.hints.task = "-code"
    request.hints.agent = ".assistant"
    async with running_server(parse_config(sim_config())) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.route(request)
        assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
        by_field = {v.field: v.description for v in info.value.field_violations}
        assert by_field == {"hints.task": rule, "hints.agent": rule, "tenant": rule}
        # Names that follow the rule pass it (so an unknown tenant is not a violation).
        fine = _mutate(lambda r: setattr(r, "tenant", "a_b.c:d/e-f"))
        fine.hints.task = "0code"
        assert (await client.route(fine)).content


BIG_CASES: list[tuple[str, pb.RouteRequest, str]] = [
    (
        "a 20k-character model name",
        _mutate(lambda r: setattr(r.hints, "model", "m" * 20_000)),
        "hints.model",
    ),
    (
        "a 20k-character use case",
        _mutate(lambda r: setattr(r.hints, "use_case", "u" * 20_000)),
        "hints.use_case",
    ),
    (
        "300 empty stop sequences",
        _mutate(lambda r: r.params.stop.extend([""] * 300)),
        "params.stop",
    ),
    (
        "120 empty messages",
        pb.RouteRequest(messages=[pb.Message() for _ in range(120)]),
        "messages[0].role",
    ),
]


@pytest.mark.parametrize(("name", "request_msg", "field"), BIG_CASES, ids=[c[0] for c in BIG_CASES])
async def test_a_large_invalid_request_keeps_its_details(
    name: str, request_msg: pb.RouteRequest, field: str
) -> None:
    # The status (message and details) must fit gRPC's 16 KiB of trailers: past that the
    # caller would get RESOURCE_EXHAUSTED and nothing else.
    async with running_server(parse_config(sim_config())) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.route(request_msg)
        err = info.value
        assert err.code is grpc.StatusCode.INVALID_ARGUMENT, err
        assert err.reason == "INVALID_REQUEST"
        assert field in [v.field for v in err.field_violations]
        assert len(str(err)) < 2048
        assert (await client.route("hello")).content


async def test_a_large_unknown_tier_in_list_models_keeps_its_details() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.list_models(tier="t" * 20_000)
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in info.value.field_violations] == ["tier"]


async def test_many_failed_attempts_keep_their_status() -> None:
    # Twelve candidates whose upstream answers 500 with a verbose body: UNAVAILABLE with
    # every attempt, not RESOURCE_EXHAUSTED for trailers too large.
    async def fail(request: web.Request) -> web.Response:
        body = {"error": {"message": "The server had an error. " * 40, "type": "server_error"}}
        return web.json_response(body, status=500)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", fail)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    n = 12
    config: dict[str, Any] = {
        "providers": {
            f"p{i}": {"kind": "openai", "base_url": f"http://127.0.0.1:{port}/v1"} for i in range(n)
        },
        "tiers": ["cheap"],
        "models": {
            f"m{i}": {
                "provider": f"p{i}",
                "model_id": f"gpt-{i}",
                "tier": "cheap",
                "input_usd_per_mtok": 1,
                "output_usd_per_mtok": 2,
            }
            for i in range(n)
        },
        "routing": {
            "baseline_model": "m0",
            "max_failover_attempts": n,
            "max_upstream_calls": n,
            "difficulty_tiers": {"low": "cheap", "medium": "cheap", "high": "cheap"},
        },
        "decisions": {"sink": "none"},
    }
    try:
        async with running_server(parse_config(config)) as (_, client):
            with pytest.raises(QuorumError) as info:
                await client.route("hello")
    finally:
        await runner.cleanup()
    err = info.value
    assert err.code is grpc.StatusCode.UNAVAILABLE, err
    assert err.reason == "ALL_ATTEMPTS_FAILED"
    assert sorted(a.model for a in err.attempts) == sorted(f"m{i}" for i in range(n))
    assert all("HTTP 500" in a.reason for a in err.attempts)


async def test_schema_references_are_never_fetched() -> None:
    # Cascade and consensus validate answers against the schema: a reference it cannot
    # resolve is the caller's error, and a URL in it is never fetched by the server.
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    internal = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=internal.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{internal.server_address[1]}/internal/admin.json"
    cases = [
        ('{"$ref": "#/definitions/missing"}', pb.STRATEGY_CASCADE),
        ('{"$ref": "#/definitions/missing"}', pb.STRATEGY_CONSENSUS_MAJORITY),
        (f'{{"$ref": "{url}"}}', pb.STRATEGY_CASCADE),
        (f'{{"properties": {{"a": {{"$ref": "{url}"}}}}}}', pb.STRATEGY_CONSENSUS_MAJORITY),
    ]
    try:
        async with running_server(parse_config(sim_config())) as (_, client):
            for schema, strategy in cases:
                with pytest.raises(QuorumError) as info:
                    await client.route(_schema(schema, strategy))
                assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT, info.value
                assert [v.field for v in info.value.field_violations] == [
                    "params.response_format.json_schema"
                ]
            with pytest.raises(QuorumError) as streamed:
                async for _ in client.route_stream(_schema('{"$ref": "#/x"}', pb.STRATEGY_CASCADE)):
                    pass
            assert streamed.value.code is grpc.StatusCode.INVALID_ARGUMENT
            # A self-contained schema with references is served.
            good = (
                '{"$defs": {"s": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/s"}}}'
            )
            for strategy in (pb.STRATEGY_CASCADE, pb.STRATEGY_CONSENSUS_MAJORITY):
                assert (await client.route(_schema(good, strategy))).content
    finally:
        internal.shutdown()
        internal.server_close()
    assert hits == []


async def test_a_backtracking_schema_pattern_does_not_hold_the_server() -> None:
    # The gate validates each cascade answer against the schema on the event loop: with
    # Python's re, "^(.|.)*Z$" on a sentence-long answer never finished, and every RPC
    # (health checks included) waited. With RE2 the answer is checked at once.
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "pattern": "^(.|.)*Z$"}},
    }
    async with running_server(parse_config(sim_config())) as (_, client):
        refused = _schema('{"properties": {"a": {"pattern": "(?<=a)b"}}}')
        with pytest.raises(QuorumError) as info:
            await client.route(refused)
        assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert "pattern '(?<=a)b' is not supported" in info.value.field_violations[0].description
        for strategy in (pb.STRATEGY_CASCADE, pb.STRATEGY_CONSENSUS_MAJORITY):
            started = time.monotonic()
            # No answer matches the pattern: failing the gate is fine, hanging is not.
            with contextlib.suppress(QuorumError):
                await asyncio.wait_for(client.route(_schema(json.dumps(schema), strategy)), 10)
            assert time.monotonic() - started < 5
        assert (await client.route("hello")).content
