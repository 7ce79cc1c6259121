"""Answers wrong in one field, and keep-alive events, through the real server: a NaN
log-probability or an object for text fails over as a bad response (never an answer, nor
a NaN in the cascade); an event with empty data leaves the stream whole."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from quorum.route.v1 import types_pb2 as pb
from tests.conftest import running_server
from tests.fakes import scripted
from tests.fakes.common import OK_TEXT, Running
from tests.fakes.scripted import Canned, Scripted
from tests.faults.upstreams import collect, config, kinds, outcomes, provider, route_or_error


@pytest.fixture
async def odd() -> AsyncIterator[Scripted]:
    async with scripted.serve() as upstream:
        yield upstream


def _answer(**logprobs: Any) -> dict[str, Any]:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": "odd"},
        "finish_reason": "stop",
    }
    if logprobs:
        choice["logprobs"] = {"content": [{"token": "odd", **logprobs}]}
    return {"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


@pytest.mark.parametrize("logprob", ["NaN", "-Infinity", 5.0])
async def test_a_logprob_that_is_no_log_probability_fails_over(
    oa: Running, odd: Scripted, logprob: Any
) -> None:
    odd.default = Canned.json(_answer(logprob=logprob))
    cfg = config(
        {"odd": provider(odd.root), "good": provider(oa.base_url)},
        [("first", "odd", "m"), ("second", "good", "ok")],
    )
    async with running_server(cfg) as (_, client):
        r = await route_or_error(client)
    assert isinstance(r, pb.RouteResponse), r
    assert r.model == "second" and r.content == OK_TEXT
    assert outcomes(r.attempts) == [("first", "FAILED"), ("second", "SUCCEEDED")]
    assert r.attempts[0].error_reason == "PROVIDER_BAD_RESPONSE"


async def test_streamed_text_that_is_an_object_fails_over(oa: Running, odd: Scripted) -> None:
    odd.default = Canned.events(_chunk({"content": {"a": 1}}, "stop"), b"data: [DONE]\n\n")
    cfg = config(
        {"odd": provider(odd.root), "good": provider(oa.base_url)},
        [("first", "odd", "m"), ("second", "good", "ok")],
    )
    async with running_server(cfg) as (_, client):
        events = await collect(client)
    assert kinds(events)[-1] == "final" and "fallback" not in kinds(events)
    final = events[-1].final
    assert final.model == "second" and final.content == OK_TEXT
    assert final.attempts[0].error_reason == "PROVIDER_BAD_RESPONSE"


async def test_keep_alive_events_with_empty_data_leave_the_stream_whole(odd: Scripted) -> None:
    odd.default = Canned.events(
        b"data:\n\n",
        _chunk({"role": "assistant", "content": "Hello "}),
        b"event: ping\ndata: \n\n",
        _chunk({"content": "world"}),
        _chunk({}, "stop"),
        b"data: [DONE]\n\n",
    )
    cfg = config({"odd": provider(odd.root)}, [("only", "odd", "m")])
    async with running_server(cfg) as (_, client):
        events = await collect(client)
    assert kinds(events)[-1] == "final", events[-1]
    assert (
        "".join(e.chunk.text for e in events if e.WhichOneof("event") == "chunk") == "Hello world"
    )
    assert outcomes(events[-1].final.attempts) == [("only", "SUCCEEDED")]
