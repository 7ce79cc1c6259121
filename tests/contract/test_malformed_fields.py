"""Answers well framed but wrong in one field, and keep-alive events, each vendor's adapter
against a scripted upstream that sends the exact bytes:

* a log-probability that is not a finite number at most 0 ("NaN", "-Infinity" as
  strings, 5.0) is a bad response, never a NaN for the cascade and the front door;
* text that is not a string (an object where a delta's text belongs) is a bad response,
  streamed as unary, never ``str()`` of it returned as the answer;
* an SSE event whose data is empty (``data:``, ``event: ping`` with ``data: ``) is a
  keep-alive, skipped: the stream goes on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from quorum.server.config import ProviderConfig
from quorum.server.domain import Completion
from quorum.server.errors import ProviderBadResponse
from quorum.server.providers.base import Provider, StreamDelta
from quorum.server.providers.http import HttpClient
from tests.contract.conftest import CASES, ask
from tests.fakes import scripted
from tests.fakes.scripted import Canned, Scripted

NOT_TEXT: list[Any] = [{"a": 1}, ["hi"], 42, True]
BAD_LOGPROBS: list[Any] = ["NaN", "-Infinity", "Infinity", 5.0, 0.01]
KEEPALIVES = [b"data:\n\n", b"event: ping\ndata: \n\n", b"event: ping\n\n", b"data:  \n\n"]


@pytest.fixture
async def upstream() -> AsyncIterator[Scripted]:
    async with scripted.serve() as running:
        yield running


def _adapter(kind: str, upstream: Scripted, http: HttpClient) -> Provider:
    config = ProviderConfig(kind=kind, base_url=upstream.root, timeout_s=5)  # type: ignore[arg-type]
    return CASES[kind].adapter(f"scripted-{kind}", config, SecretStr("test-key"), http)


async def _stream(provider: Provider) -> list[StreamDelta]:
    return [delta async for delta in provider.stream(ask("m"))]


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _unary(kind: str, text: Any, logprob: Any = None) -> dict[str, Any]:
    """A whole answer whose text is ``text`` (and whose log-probability is ``logprob``)."""
    if kind == "openai":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }
        if logprob is not None:
            choice["logprobs"] = {
                "content": [{"token": "a", "logprob": -0.5}, {"token": "b", "logprob": logprob}]
            }
        return {"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    if kind == "anthropic":
        return {
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 3, "output_tokens": 2},
        }
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}]}, "finishReason": "STOP"}
    if logprob is not None:
        candidate["avgLogprobs"] = logprob
    return {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2},
    }


def _frames(kind: str, text: Any) -> list[bytes]:
    """A whole stream whose one text piece is ``text``."""
    if kind == "openai":
        chunks = [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
            {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
        ]
        return [
            *(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks),
            b"data: [DONE]\n\n",
        ]
    if kind == "anthropic":
        usage = {"input_tokens": 3, "output_tokens": 0}
        return [
            _event("message_start", {"type": "message_start", "message": {"usage": usage}}),
            _event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            _event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                },
            ),
            _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 2},
                },
            ),
            _event("message_stop", {"type": "message_stop"}),
        ]
    chunk = _unary(kind, text)
    return [b"data: " + json.dumps(chunk).encode() + b"\n\n"]


# --- the scripted answers are well formed: what fails below is the one field -------------


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_well_formed_scripted_answers_pass(
    upstream: Scripted, http: HttpClient, kind: str
) -> None:
    provider = _adapter(kind, upstream, http)
    upstream.script.append(Canned.json(_unary(kind, "hi", -0.25)))
    completion = await provider.complete(ask("m"))
    assert completion.content == "hi"
    upstream.script.append(Canned.events(*_frames(kind, "hi")))
    deltas = await _stream(provider)
    assert "".join(d.text for d in deltas) == "hi" and deltas[-1].finish_reason == "stop"


# --- log-probabilities -------------------------------------------------------------------


@pytest.mark.parametrize("logprob", BAD_LOGPROBS)
@pytest.mark.parametrize("kind", ["openai", "gemini"])
async def test_a_logprob_that_is_no_log_probability_is_a_bad_response(
    upstream: Scripted, http: HttpClient, kind: str, logprob: Any
) -> None:
    upstream.default = Canned.json(_unary(kind, "hi", logprob))
    with pytest.raises(ProviderBadResponse, match=r"(?i)logprob"):
        await _adapter(kind, upstream, http).complete(ask("m", logprobs=True))


@pytest.mark.parametrize(("kind", "mean"), [("openai", -0.25), ("gemini", 0.0)])
async def test_a_certain_or_likely_answer_keeps_its_logprob(
    upstream: Scripted, http: HttpClient, kind: str, mean: float
) -> None:
    upstream.default = Canned.json(_unary(kind, "hi", 0.0 if kind == "openai" else mean))
    completion: Completion = await _adapter(kind, upstream, http).complete(ask("m", logprobs=True))
    assert completion.mean_logprob == mean


@pytest.mark.parametrize("kind", ["openai", "gemini"])
async def test_a_logprob_rounded_just_above_zero_is_certainty(
    upstream: Scripted, http: HttpClient, kind: str
) -> None:
    # Servers computing log-probabilities in float32 may report a certain token as +1e-7.
    upstream.default = Canned.json(_unary(kind, "hi", 1.2e-7))
    completion: Completion = await _adapter(kind, upstream, http).complete(ask("m", logprobs=True))
    assert completion.mean_logprob is not None and completion.mean_logprob <= 0.0


# --- text that is not a string -----------------------------------------------------------


@pytest.mark.parametrize("value", NOT_TEXT, ids=repr)
@pytest.mark.parametrize("kind", sorted(CASES))
async def test_streamed_text_that_is_not_a_string_is_a_bad_response(
    upstream: Scripted, http: HttpClient, kind: str, value: Any
) -> None:
    upstream.default = Canned.events(*_frames(kind, value))
    with pytest.raises(ProviderBadResponse, match="not a string"):
        await _stream(_adapter(kind, upstream, http))


@pytest.mark.parametrize("value", NOT_TEXT, ids=repr)
@pytest.mark.parametrize("kind", sorted(CASES))
async def test_unary_text_that_is_not_a_string_is_a_bad_response(
    upstream: Scripted, http: HttpClient, kind: str, value: Any
) -> None:
    upstream.default = Canned.json(_unary(kind, value))
    with pytest.raises(ProviderBadResponse, match="not a string"):
        await _adapter(kind, upstream, http).complete(ask("m"))


@pytest.mark.parametrize("stream", [False, True])
async def test_an_openai_refusal_that_is_not_a_string_is_a_bad_response(
    upstream: Scripted, http: HttpClient, stream: bool
) -> None:
    refusal = {"reason": "no"}
    if stream:
        frames = _frames("openai", "")
        frames.insert(
            1, b'data: {"choices": [{"index": 0, "delta": {"refusal": {"reason": "no"}}}]}\n\n'
        )
        upstream.default = Canned.events(*frames)
    else:
        answer = _unary("openai", None)
        answer["choices"][0]["message"]["refusal"] = refusal
        upstream.default = Canned.json(answer)
    provider = _adapter("openai", upstream, http)
    with pytest.raises(ProviderBadResponse, match="refusal is a dict, not a string"):
        await (_stream(provider) if stream else provider.complete(ask("m")))


@pytest.mark.parametrize("value", [{"a": 1}, 7])
async def test_an_anthropic_block_start_or_json_piece_that_is_not_a_string_is_a_bad_response(
    upstream: Scripted, http: HttpClient, value: Any
) -> None:
    start = _frames("anthropic", "hi")
    start[1] = _event(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": value},
        },
    )
    json_piece = _frames("anthropic", "hi")
    json_piece[1] = _event(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t1", "name": "f"},
        },
    )
    json_piece[2] = _event(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": value},
        },
    )
    provider = _adapter("anthropic", upstream, http)
    for frames in (start, json_piece):
        upstream.script.append(Canned.events(*frames))
        with pytest.raises(ProviderBadResponse, match="not a string"):
            await _stream(provider)


# --- keep-alive events with empty data ---------------------------------------------------


@pytest.mark.parametrize("keepalive", KEEPALIVES)
@pytest.mark.parametrize("kind", sorted(CASES))
async def test_an_event_with_empty_data_is_skipped_and_the_stream_goes_on(
    upstream: Scripted, http: HttpClient, kind: str, keepalive: bytes
) -> None:
    frames = _frames(kind, "hi")
    # Before the first event, between two, and last (Gemini's stream has no end marker).
    upstream.default = Canned.events(keepalive, frames[0], keepalive, *frames[1:], keepalive)
    deltas = await _stream(_adapter(kind, upstream, http))
    assert "".join(d.text for d in deltas) == "hi"
    assert deltas[-1].finish_reason == "stop"
