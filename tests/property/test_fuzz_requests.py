"""Random and malformed requests through a live server: never INTERNAL or UNKNOWN, never
a dead server.

One ``quorum serve`` process (simulated models) serves the whole module; hypothesis
sends it random RouteRequests (every field, any value the wire allows), valid requests
with their bytes mangled, and plain random bytes, to every RouteService method.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorum.route.v1 import route_service_pb2 as svc_pb
from quorum.route.v1 import types_pb2 as pb
from tests.conftest import sim_config

QUORUM = Path(sys.executable).with_name("quorum")
SERVICE = "/quorum.route.v1.RouteService/"
UNARY = ("Route", "Plan", "ListModels", "Feedback")
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
UINT32 = st.integers(min_value=0, max_value=2**32 - 1)
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "flash", "mid", "cheap", "premium", "autocomplete", "a" * 200]),
)
NAMES = st.one_of(TEXT, st.sampled_from(["flash", "frontier", "cheap", "legal_review", "x:y"]))
ENUM = st.one_of(st.integers(min_value=0, max_value=8), INT32)


@st.composite
def messages(draw: st.DrawFn) -> pb.Message:
    message = pb.Message(
        role=draw(ENUM),  # type: ignore[arg-type]
        content=draw(st.text(max_size=300)),
        tool_call_id=draw(TEXT),
        name=draw(TEXT),
    )
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        part = message.parts.add()
        which = draw(st.sampled_from(["text", "image", "none"]))
        if which == "text":
            part.text = draw(st.text(max_size=50))
        elif which == "image":
            part.image.url = draw(st.sampled_from(["", "https://x/y.png", "ftp://x", "data:"]))
            part.image.data = draw(st.binary(max_size=30))
            part.image.media_type = draw(st.sampled_from(["", "image/png", "text/html"]))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        call = message.tool_calls.add()
        call.id, call.name = draw(TEXT), draw(TEXT)
        call.arguments_json = draw(st.sampled_from(["", "{}", "[1]", '{"a": 1}', "{bad"]))
    return message


@st.composite
def route_requests(draw: st.DrawFn) -> pb.RouteRequest:
    request = pb.RouteRequest(
        request_id=draw(TEXT),
        tenant=draw(TEXT),
        messages=draw(st.lists(messages(), max_size=3)),
    )
    params = request.params
    params.max_tokens = draw(UINT32)
    if draw(st.booleans()):
        params.temperature = draw(FLOATS)
    if draw(st.booleans()):
        params.top_p = draw(FLOATS)
    params.stop.extend(draw(st.lists(st.text(max_size=300), max_size=6)))
    params.response_format.type = draw(ENUM)  # type: ignore[assignment]
    params.response_format.json_schema = draw(
        st.sampled_from(["", "{}", '{"type": "object"}', "[", "null", "[[[[[[[[[[]]]]]]]]]]"])
    )
    params.response_format.schema_name = draw(TEXT)
    params.logprobs = draw(st.booleans())
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        tool = params.tools.add()
        tool.name, tool.description = draw(NAMES), draw(TEXT)
        tool.parameters_json = draw(st.sampled_from(["", "{}", "{x", '{"type": "object"}']))
    params.tool_choice.mode = draw(ENUM)  # type: ignore[assignment]
    params.tool_choice.tool_name = draw(NAMES)
    hints = request.hints
    hints.strategy = draw(ENUM)  # type: ignore[assignment]
    hints.priority = draw(ENUM)  # type: ignore[assignment]
    hints.task, hints.agent, hints.use_case = draw(NAMES), draw(NAMES), draw(NAMES)
    hints.model, hints.tier = draw(NAMES), draw(NAMES)
    for capability in draw(st.lists(ENUM, max_size=3)):
        hints.required_capabilities.append(capability)  # type: ignore[arg-type]
    if draw(st.booleans()):
        hints.max_cost_usd = draw(FLOATS)
    hints.sensitivity = draw(ENUM)  # type: ignore[assignment]
    hints.critical = draw(st.booleans())
    hints.consensus_size = draw(UINT32)
    hints.allow_cache = draw(st.booleans())
    return request


@st.composite
def plausible_requests(draw: st.DrawFn) -> pb.RouteRequest:
    """Requests that mostly pass validation, so odd values reach plan and execute."""
    request = pb.RouteRequest(tenant=draw(st.sampled_from(["", "team-a"])))
    turns = draw(st.integers(min_value=1, max_value=3))
    for i in range(turns):
        last = i == turns - 1
        role = pb.ROLE_USER if last else draw(st.sampled_from([pb.ROLE_SYSTEM, pb.ROLE_ASSISTANT]))
        request.messages.add(role=role, content=draw(st.text(min_size=1, max_size=400)))
    params = request.params
    params.max_tokens = draw(st.sampled_from([0, 1, 16, 4096, 1_000_000]))
    if draw(st.booleans()):
        params.temperature = draw(st.floats(min_value=0, max_value=2))
    params.stop.extend(draw(st.lists(st.text(min_size=1, max_size=8), max_size=4)))
    fmt = draw(st.sampled_from([0, 1, 2, 3]))
    params.response_format.type = fmt  # type: ignore[assignment]
    if fmt == pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        params.response_format.json_schema = '{"type": "object", "properties": {}}'
    params.logprobs = draw(st.booleans())
    if draw(st.booleans()):
        params.tools.add(name="lookup", parameters_json='{"type": "object"}')
        params.tool_choice.mode = draw(st.integers(min_value=0, max_value=4))  # type: ignore[assignment]
        if params.tool_choice.mode == pb.TOOL_CHOICE_MODE_TOOL:
            params.tool_choice.tool_name = "lookup"
    hints = request.hints
    hints.strategy = draw(st.integers(min_value=0, max_value=5))  # type: ignore[assignment]
    hints.priority = draw(st.integers(min_value=0, max_value=4))  # type: ignore[assignment]
    hints.model = draw(st.sampled_from(["", "", "flash", "mid", "frontier"]))
    hints.tier = draw(st.sampled_from(["", "", "cheap", "premium"]))
    hints.use_case = draw(st.sampled_from(["", "autocomplete", "legal_review"]))
    hints.task = draw(st.sampled_from(["", "code", "math", "chat"]))
    for capability in draw(st.lists(st.integers(min_value=1, max_value=6), max_size=2)):
        hints.required_capabilities.append(capability)  # type: ignore[arg-type]
    if draw(st.booleans()):
        hints.max_cost_usd = draw(st.sampled_from([0.0, 1e-9, 1e-4, 1.0]))
    hints.critical = draw(st.booleans())
    hints.consensus_size = draw(st.sampled_from([0, 2, 3, 16]))
    hints.allow_cache = draw(st.booleans())
    return request


def valid_request() -> bytes:
    return pb.RouteRequest(
        messages=[pb.Message(role=pb.ROLE_USER, content="What is 2 + 2?")]
    ).SerializeToString()


@st.composite
def mangled_bytes(draw: st.DrawFn) -> bytes:
    """A valid request's bytes, cut, flipped or spliced."""
    data = bytearray(valid_request())
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(min_value=1, max_value=255))
        elif op == "cut":
            del data[at : at + draw(st.integers(min_value=1, max_value=8))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A live server on a free port; yields its address and log path."""
    tmp = tmp_path_factory.mktemp("fuzz")
    data = sim_config()
    data["server"] = {"max_messages": 8, "max_request_bytes": 64 * 1024, "log_level": "warning"}
    config = tmp / "quorum.yaml"
    config.write_text(yaml.safe_dump(data))
    log = tmp / "serve.log"
    port = _free_port()
    address = f"127.0.0.1:{port}"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [QUORUM, "serve", "--config", config, "--address", address],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            _wait_serving(address)
            yield address, log
            assert proc.poll() is None, "the server died"
            assert _serving(address), "the server stopped serving"
        finally:
            proc.terminate()
            proc.wait(20)


@pytest.fixture(scope="module")
def channel(server: tuple[str, Path]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server[0]) as ch:
        yield ch


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serving(address: str) -> bool:
    with grpc.insecure_channel(address) as ch:
        try:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _wait_serving(address: str) -> None:
    deadline = time.monotonic() + 30
    while not _serving(address):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{address} never became SERVING")
        time.sleep(0.05)


def call(channel: grpc.Channel, method: str, payload: bytes) -> grpc.StatusCode:
    """Send raw bytes to ``method``; the final status code."""
    try:
        if method == "RouteStream":
            stream = channel.unary_stream(SERVICE + method, None, None)
            for _ in stream(payload, timeout=10):
                pass
        else:
            channel.unary_unary(SERVICE + method, None, None)(payload, timeout=10)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


def assert_handled(
    server: tuple[str, Path], method: str, payload: bytes, code: grpc.StatusCode
) -> None:
    if code in FORBIDDEN:
        tail = server[1].read_text()[-3000:]
        raise AssertionError(f"{method} answered {code.name} to {payload!r}\n--- log:\n{tail}")


@SETTINGS
@given(request=route_requests(), method=st.sampled_from(["Route", "Plan", "RouteStream"]))
def test_random_route_requests_get_a_defined_status(
    server: tuple[str, Path], channel: grpc.Channel, request: pb.RouteRequest, method: str
) -> None:
    payload = request.SerializeToString()
    if method != "Route":
        # PlanRequest and RouteStreamRequest wrap the RouteRequest as field 1.
        payload = svc_pb.PlanRequest(request=request).SerializeToString()
    assert_handled(server, method, payload, call(channel, method, payload))


@SETTINGS
@given(request=plausible_requests(), method=st.sampled_from(["Route", "Plan", "RouteStream"]))
def test_plausible_requests_are_answered_or_refused_cleanly(
    server: tuple[str, Path], channel: grpc.Channel, request: pb.RouteRequest, method: str
) -> None:
    payload = request.SerializeToString()
    if method != "Route":
        payload = svc_pb.PlanRequest(request=request).SerializeToString()
    assert_handled(server, method, payload, call(channel, method, payload))


@SETTINGS
@given(
    payload=st.one_of(st.binary(max_size=512), mangled_bytes()),
    method=st.sampled_from([*UNARY, "RouteStream"]),
)
def test_random_bytes_on_the_wire_get_a_defined_status(
    server: tuple[str, Path], channel: grpc.Channel, payload: bytes, method: str
) -> None:
    assert_handled(server, method, payload, call(channel, method, payload))


def test_a_valid_request_still_works_after_the_fuzzing(
    server: tuple[str, Path], channel: grpc.Channel
) -> None:
    assert call(channel, "Route", valid_request()) is grpc.StatusCode.OK
