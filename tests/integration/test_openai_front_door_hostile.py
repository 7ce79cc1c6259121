"""Careless or hostile HTTP clients: odd JSON gets a 400 naming the field, and a client
that goes away mid-request takes its upstream call with it.

The front door cancels a handler whose client disconnected (aiohttp's
``handler_cancellation``), so a unary request does not keep its upstream call, admission
ticket and budget reservation until the provider's timeout.
"""

from __future__ import annotations

import asyncio
import io
import json

import aiohttp
import pytest
import structlog
from prometheus_client import CollectorRegistry

from quorum.server.service.status import MAX_VIOLATIONS
from tests.fakes import openai_server
from tests.integration.test_openai_front_door import MATH, _base_url, front_door, upstream_config

_BIG = "1" + "0" * 400  # a JSON integer too large for a float
_HI = '"messages":[{"role":"user","content":"hi"}]'


def _body(extra: str, *, stream: bool = False) -> bytes:
    """A valid request with the raw JSON members ``extra`` added."""
    return f'{{"model":"quorum:auto","stream":{str(stream).lower()},{_HI},{extra}}}'.encode()


_NAN_TOOL = (
    b'"tools":[{"type":"function","function":{"name":"f",'
    b'"parameters":{"type":"number","maximum":NaN}}}]'
)
BAD_BODIES: list[tuple[str, bytes, str]] = [
    # Python's json reads these; JSON has no such values, and the providers refuse them.
    (
        "NaN in a tool schema",
        b'{"model":"quorum:auto",' + _HI.encode() + b"," + _NAN_TOOL + b"}",
        "body",
    ),
    ("Infinity as temperature", _body('"temperature":Infinity'), "body"),
    ("a number beyond a double", _body('"temperature":1e999'), "body"),
    (
        "surrogate in content",
        b'{"model":"quorum:auto","messages":[{"role":"user","content":"hi \\ud800"}]}',
        "messages[0].content",
    ),
    (
        "surrogate in content, streamed",
        b'{"model":"quorum:auto","stream":true,'
        b'"messages":[{"role":"user","content":"hi \\ud800"}]}',
        "messages[0].content",
    ),
    (
        "surrogate as UTF-8 bytes",
        b'{"model":"quorum:auto","messages":[{"role":"user","content":"hi \xed\xa0\x80"}]}',
        "messages[0].content",
    ),
    ("surrogate in model", b'{"model":"x\\ud800",' + _HI.encode() + b"}", "model"),
    (
        "surrogate in a tool description",
        _body('"tools":[{"type":"function","function":{"name":"a","description":"\\udfff"}}]'),
        "tools[0].function.description",
    ),
    ("huge temperature", _body(f'"temperature":{_BIG}'), "temperature"),
    ("huge temperature, streamed", _body(f'"temperature":{_BIG}', stream=True), "temperature"),
    ("huge top_p", _body(f'"top_p":{_BIG}'), "top_p"),
    ("huge top_p, streamed", _body(f'"top_p":{_BIG}', stream=True), "top_p"),
    ("huge cost ceiling", _body(f'"quorum":{{"max_cost_usd":{_BIG}}}'), "quorum.max_cost_usd"),
    (
        "huge cost ceiling, streamed",
        _body(f'"quorum":{{"max_cost_usd":{_BIG}}}', stream=True),
        "quorum.max_cost_usd",
    ),
    ("task with a newline", _body('"quorum":{"task":"code\\n"}'), "quorum.task"),
    (
        "tool name with a newline",
        _body('"tools":[{"type":"function","function":{"name":"abc\\n"}}]'),
        "tools[0].function.name",
    ),
    (
        "schema name with a newline",
        _body(
            '"response_format":{"type":"json_schema",'
            '"json_schema":{"name":"x\\n","schema":{"type":"object"}}}'
        ),
        "response_format.json_schema.name",
    ),
    # Values of the wrong JSON type, which Python would take as truthy, falsy or equal.
    ("n true", _body('"n":true'), "n"),
    ("n 1.0", _body('"n":1.0'), "n"),
    ("stream 0", b'{"model":"quorum:auto","stream":0,' + _HI.encode() + b"}", "stream"),
    ("stream empty", b'{"model":"quorum:auto","stream":"",' + _HI.encode() + b"}", "stream"),
    ("logprobs 0", _body('"logprobs":0'), "logprobs"),
    ("top_logprobs false", _body('"top_logprobs":false'), "top_logprobs"),
    (
        "unknown stream option",
        _body('"stream_options":{"include_usage":true,"foo":1}', stream=True),
        "stream_options.foo",
    ),
    (
        "cost ceiling 1_0",
        b'{"model":"quorum:auto?max_cost_usd=1_0",' + _HI.encode() + b"}",
        "model",
    ),
    ("critical yes", b'{"model":"quorum:auto?critical=yes",' + _HI.encode() + b"}", "model"),
    # Fields accepted and ignored are still checked, as OpenAI checks them.
    ("seed x", _body('"seed":"x"'), "seed"),
    ("store yes", _body('"store":"yes"'), "store"),
    ("parallel_tool_calls 1", _body('"parallel_tool_calls":1'), "parallel_tool_calls"),
    ("presence_penalty x", _body('"presence_penalty":"x"'), "presence_penalty"),
    ("frequency_penalty 99", _body('"frequency_penalty":99'), "frequency_penalty"),
    ("user 5", _body('"user":5'), "user"),
    ("metadata [1]", _body('"metadata":[1]'), "metadata"),
    ("metadata value 1", _body('"metadata":{"team":1}'), "metadata.team"),
    ("logit_bias x", _body('"logit_bias":"x"'), "logit_bias"),
    ("logit_bias 500", _body('"logit_bias":{"50256":500}', stream=True), "logit_bias.50256"),
    ("service_tier 7", _body('"service_tier":7'), "service_tier"),
]


@pytest.mark.parametrize(("name", "body", "param"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
async def test_odd_json_is_a_400_naming_the_field(name: str, body: bytes, param: str) -> None:
    async with front_door() as (running, client):
        url = _base_url(running) + "/chat/completions"
        async with aiohttp.ClientSession() as http:
            with structlog.testing.capture_logs() as logs:
                async with http.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    assert response.status == 400, await response.text()
                    error = (await response.json())["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            "invalid_request",
            param,
        )
        assert not [e for e in logs if e["log_level"] in ("error", "critical")], logs
        # Nothing reached a provider: the next caller is served as usual.
        answer = await client.chat.completions.create(model="quorum:auto", messages=MATH)
        assert answer.choices[0].message.content


async def test_a_body_of_many_unknown_keys_gets_a_small_error() -> None:
    """200,000 unknown keys (a 2.4 MB body) got a 12 MB 400 listing every one: the error
    lists the first MAX_VIOLATIONS, as the gRPC door does, and says how many more."""
    keys = [f"k{i:06d}" for i in range(200_000)]
    members = ",".join(f'"{key}":1' for key in reversed(keys))
    body = f'{{"model":"quorum:auto",{_HI},{members}}}'.encode()
    assert len(body) > 2_000_000
    async with front_door() as (running, client):
        async with aiohttp.ClientSession() as http:
            with structlog.testing.capture_logs() as logs:
                async with http.post(
                    _base_url(running) + "/chat/completions",
                    data=io.BytesIO(body),
                    headers={"Content-Type": "application/json"},
                ) as response:
                    assert response.status == 400
                    text = await response.text()
        assert len(text) < 16_000
        error = json.loads(text)["error"]
        assert (error["code"], error["param"]) == ("invalid_request", "k000000")
        listed = [v["field"] for v in error["quorum"]["violations"]]
        assert listed == keys[:MAX_VIOLATIONS]
        assert error["quorum"]["more_violations"] == 200_000 - MAX_VIOLATIONS
        assert error["message"].endswith("; and 199990 more")
        assert logs and all(len(repr(event)) < 4000 for event in logs), logs
        answer = await client.chat.completions.create(model="quorum:auto", messages=MATH)
        assert answer.choices[0].message.content


def _requests(registry: CollectorRegistry) -> dict[str, float]:
    """``quorum_requests_total`` by status code."""
    counts: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "quorum_requests_total":
                code = sample.labels["code"]
                counts[code] = counts.get(code, 0) + sample.value
    return counts


async def _until(check: object, timeout_s: float) -> bool:
    """Poll ``check()`` until it is true or ``timeout_s`` passes."""
    assert callable(check)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
async def test_client_disconnect_cancels_the_upstream_call(
    stream: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-test")
    async with openai_server.serve() as fake:
        # The fake waits 3 s before answering, and notices a client that left meanwhile.
        async with front_door(upstream_config(fake.base_url, "slow-3000")) as (running, _):
            stats = fake.server.stats
            registry = running.router.metrics.registry
            with structlog.testing.capture_logs() as logs:
                async with aiohttp.ClientSession() as http:
                    request = http.post(
                        _base_url(running) + "/chat/completions",
                        json={"model": "up-0", "messages": MATH, "stream": stream},
                        timeout=aiohttp.ClientTimeout(total=0.5),
                    )
                    with pytest.raises(asyncio.TimeoutError):
                        async with request:
                            pass  # the answer is 3 s away: the client gives up at 0.5 s
                assert stats.requests == 1
                # The upstream call is dropped well before the fake would have answered.
                assert await _until(lambda: stats.client_disconnects == 1, 1.5), stats
                assert stats.completed == 0
                assert await _until(lambda: _requests(registry) == {"CANCELLED": 1}, 1.0)
            assert registry.get_sample_value("quorum_inflight_requests") == 0
            events = [e["event"] for e in logs]
            assert "http_cancelled" in events
            assert not [e for e in logs if e["log_level"] in ("error", "critical")], logs


async def test_an_unknown_model_of_megabytes_is_not_echoed_whole() -> None:
    """Neither the 404 nor its log line repeats a 4 MB model name (it was both, twice)."""
    name = "x" * 4_000_000
    async with front_door() as (running, client):
        base = _base_url(running)
        async with aiohttp.ClientSession() as http:
            with structlog.testing.capture_logs() as logs:
                async with http.post(
                    base + "/chat/completions",
                    data=io.BytesIO(f'{{"model":"{name}",{_HI}}}'.encode()),
                    headers={"Content-Type": "application/json"},
                ) as response:
                    assert response.status == 404
                    text = await response.text()
                async with http.get(base + "/models/" + "y" * 5000) as response:
                    assert response.status == 404
                    by_path = await response.text()
        assert len(text) < 1000 and len(by_path) < 1000
        error = json.loads(text)["error"]
        assert (error["code"], error["param"]) == ("model_not_found", "model")
        assert error["quorum"]["metadata"]["model"].endswith("x…")
        assert json.loads(by_path)["error"]["param"] == "model"
        assert logs and all(len(repr(event)) < 2000 for event in logs), logs
        answer = await client.chat.completions.create(model="quorum:auto", messages=MATH)
        assert answer.choices[0].message.content


async def test_a_header_too_large_to_read_is_one_warning_without_a_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    async with front_door() as (running, client):
        url = _base_url(running) + "/chat/completions"
        async with aiohttp.ClientSession() as http:
            with structlog.testing.capture_logs() as logs:
                async with http.post(url, data=b"{}", headers={"x-foo": "a" * 20_000}) as response:
                    assert response.status == 400
        assert [e["event"] for e in logs] == ["http_request_unreadable"], logs
        assert logs[0]["log_level"] == "warning"
        answer = await client.chat.completions.create(model="quorum:auto", messages=MATH)
        assert answer.choices[0].message.content
    assert "Traceback" not in capfd.readouterr().err
