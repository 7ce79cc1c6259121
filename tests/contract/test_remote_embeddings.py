"""The remote encoder against the fake's ``POST /v1/embeddings``, and the official OpenAI
SDK against the same endpoint (proof that the fake speaks the real format).

The fake runs on its own thread and event loop: the encoder embeds the examples at
start-up synchronously, blocking the loop it is called from.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import openai
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from quorum.server.classify.embedding import EmbeddingUnavailable
from quorum.server.config import ProviderConfig
from quorum.server.config.routing import RemoteEmbeddingConfig
from quorum.server.providers import embeddings_http
from quorum.server.providers.embeddings_http import RemoteEncoder
from quorum.server.providers.http import HttpClient
from tests.fakes import openai_server
from tests.fakes.common import Behaviour, Running

EXAMPLES = [
    "Refund my last invoice",
    "Why was my card charged twice",
    "Book a flight to Paris next week",
    "Find a hotel near the airport",
]


@pytest.fixture
def fake() -> Iterator[Running]:
    with openai_server.serve_in_thread() as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient()
    yield client
    await client.close()


def _encoder(
    fake: Running,
    http: HttpClient | None = None,
    *,
    key: str | None = "sk-test",
    model: str = "text-embedding-3-small",
    **settings: Any,
) -> RemoteEncoder:
    provider = ProviderConfig(kind="openai", base_url=fake.base_url, timeout_s=5.0)
    remote = RemoteEmbeddingConfig(provider="emb", model=model, **settings)
    return RemoteEncoder("emb", provider, remote, SecretStr(key) if key else None, http)


def _script(fake: Running, *behaviours: str) -> None:
    fake.server.script.extend(Behaviour.parse(b) for b in behaviours)


def _expected(texts: list[str], dimensions: int = 1536) -> np.ndarray[Any, Any]:
    return np.asarray([openai_server.embed(t, dimensions) for t in texts], dtype=np.float32)


# ---- start-up: the examples, once --------------------------------------------------------


def test_examples_are_embedded_in_batches(fake: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings_http, "_BATCH", 3)
    encoder = _encoder(fake)
    texts = [*EXAMPLES, "Cheapest train to Berlin", "Change my flight booking", "Cancel my plan"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (7, 1536)
    assert np.allclose(vectors, _expected(texts), atol=1e-6)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    stats = fake.server.stats
    assert stats.requests == 3  # 3 + 3 + 1
    assert stats.last_body == {"model": "text-embedding-3-small", "input": ["Cancel my plan"]}
    assert encoder.dim == 1536
    assert encoder.startup_tokens == sum(len(t.split()) for t in texts)


def test_dimensions_are_asked_for(fake: Running) -> None:
    encoder = _encoder(fake, dimensions=64)
    vectors = encoder.encode(EXAMPLES)
    assert vectors.shape == (4, 64)
    assert np.allclose(vectors, _expected(EXAMPLES, 64), atol=1e-6)
    assert fake.server.stats.last_body["dimensions"] == 64


def test_a_blank_example_is_not_sent_and_matches_nothing(fake: Running) -> None:
    vectors = _encoder(fake).encode(["Refund my invoice", "   "])
    assert fake.server.stats.last_body["input"] == ["Refund my invoice"]
    assert not vectors[1].any()


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        ("bad-key", "HTTP 401: Incorrect API key provided"),
        ("quota", "HTTP 429: You exceeded your current quota"),
        ("error-400", "HTTP 400: Invalid request."),
        ("malformed", "invalid JSON"),
    ],
)
def test_a_lasting_failure_at_start_up_is_not_retried(
    fake: Running, behaviour: str, message: str
) -> None:
    _script(fake, behaviour)
    with pytest.raises(EmbeddingUnavailable) as info:
        _encoder(fake).encode(EXAMPLES)
    assert message in str(info.value)
    assert "text-embedding-3-small" in str(info.value) and fake.base_url in str(info.value)
    assert fake.server.stats.requests == 1


def test_no_key_is_the_vendors_401(fake: Running) -> None:
    with pytest.raises(EmbeddingUnavailable, match="HTTP 401: You didn't provide an API key"):
        _encoder(fake, key=None).encode(EXAMPLES)


def test_an_unsupported_parameter_is_the_vendors_400(fake: Running) -> None:
    with pytest.raises(EmbeddingUnavailable, match="does not support specifying dimensions"):
        _encoder(fake, model="text-embedding-ada-002", dimensions=64).encode(EXAMPLES)


def test_transient_failures_at_start_up_are_retried(fake: Running) -> None:
    _script(fake, "error-503", "ratelimit-0")
    vectors = _encoder(fake).encode(EXAMPLES)
    assert vectors.shape == (4, 1536)
    assert fake.server.stats.requests == 3


def test_a_lasting_outage_at_start_up_gives_up_after_three_tries(
    fake: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embeddings_http, "_STARTUP_BACKOFF_S", 0.01)
    _script(fake, "error-500", "error-500", "error-500")
    with pytest.raises(EmbeddingUnavailable, match="HTTP 500: The server had an error"):
        _encoder(fake).encode(EXAMPLES)
    assert fake.server.stats.requests == 3


# ---- per request -------------------------------------------------------------------------


async def test_a_prompt_is_embedded_once_then_cached(fake: Running, http: HttpClient) -> None:
    encoder = _encoder(fake, http)
    encoder.encode(EXAMPLES)
    prompt = "Please refund the invoice for my card"
    first = await encoder.aencode([prompt])
    assert np.allclose(first, _expected([prompt]), atol=1e-6)
    requests = fake.server.stats.requests
    again = await encoder.aencode([prompt])
    assert np.array_equal(first, again)
    assert fake.server.stats.requests == requests  # from the cache


@pytest.mark.parametrize(
    ("behaviour", "reason", "message"),
    [
        ("bad-key", "PROVIDER_AUTH", "HTTP 401: Incorrect API key provided"),
        ("ratelimit-0", "PROVIDER_RATE_LIMITED", "HTTP 429: Rate limit reached for requests"),
        ("error-500", "PROVIDER_UNAVAILABLE", "HTTP 500: The server had an error"),
        ("malformed", "PROVIDER_BAD_RESPONSE", "invalid JSON"),
        ("drop", "PROVIDER_UNAVAILABLE", "connection failed"),
    ],
)
async def test_a_failure_is_unavailable_and_logged(
    fake: Running, http: HttpClient, behaviour: str, reason: str, message: str
) -> None:
    encoder = _encoder(fake, http)
    encoder.encode(EXAMPLES)
    _script(fake, behaviour)
    with capture_logs() as logs, pytest.raises(EmbeddingUnavailable, match=message):
        await encoder.aencode(["Please refund the invoice"])
    (event,) = [e for e in logs if e["event"] == "remote_embedding_failed"]
    assert event["log_level"] == "warning"
    assert (event["provider"], event["model"], event["reason"]) == (
        "emb",
        "text-embedding-3-small",
        reason,
    )
    assert "sk-test" not in str(event)
    # The next prompt is embedded again: one failure does not stop the calls.
    assert (await encoder.aencode(["Book a flight"])).shape == (1, 1536)


async def test_a_slow_answer_past_the_timeout_is_given_up(fake: Running, http: HttpClient) -> None:
    encoder = _encoder(fake, http, timeout_s=0.2)
    encoder.encode(EXAMPLES)
    _script(fake, "slow-3000")
    started = time.monotonic()
    with capture_logs() as logs, pytest.raises(EmbeddingUnavailable):
        await encoder.aencode(["Please refund the invoice"])
    assert time.monotonic() - started < 1.0
    assert [e["reason"] for e in logs if e["event"] == "remote_embedding_failed"] == [
        "PROVIDER_TIMEOUT"
    ]
    # The fake sees the connection go away: nothing waits for the answer.
    for _ in range(100):
        if fake.server.stats.client_disconnects:
            break
        await asyncio.sleep(0.02)
    assert fake.server.stats.client_disconnects == 1


async def test_calls_stop_for_a_while_after_consecutive_failures(
    fake: Running, http: HttpClient
) -> None:
    encoder = _encoder(fake, http)
    encoder.encode(EXAMPLES)
    _script(fake, *["error-500"] * 5)
    for i in range(5):
        with pytest.raises(EmbeddingUnavailable, match="HTTP 500"):
            await encoder.aencode([f"prompt {i}"])
    requests = fake.server.stats.requests
    with pytest.raises(EmbeddingUnavailable, match="skipped"):
        await encoder.aencode(["prompt 5"])
    assert fake.server.stats.requests == requests  # no call
    # Once the cool-down is over one call probes; its success resets the count.
    encoder._cool_until = time.monotonic()
    assert (await encoder.aencode(["prompt 6"])).shape == (1, 1536)
    _script(fake, "error-500")
    with pytest.raises(EmbeddingUnavailable, match="HTTP 500"):
        await encoder.aencode(["prompt 7"])
    assert (await encoder.aencode(["prompt 8"])).shape == (1, 1536)


async def test_after_the_cool_down_one_call_probes_and_the_others_skip(
    fake: Running, http: HttpClient
) -> None:
    encoder = _encoder(fake, http)
    encoder.encode(EXAMPLES)
    _script(fake, *["error-500"] * 5)
    for i in range(5):
        with pytest.raises(EmbeddingUnavailable):
            await encoder.aencode([f"prompt {i}"])
    encoder._cool_until = time.monotonic()  # the cool-down is over
    requests = fake.server.stats.requests
    outcomes = await asyncio.gather(
        *(encoder.aencode([f"concurrent {i}"]) for i in range(10)), return_exceptions=True
    )
    assert fake.server.stats.requests == requests + 1  # one probe, not ten calls
    skipped = [o for o in outcomes if isinstance(o, EmbeddingUnavailable)]
    assert len(skipped) == 9 and all("skipped" in str(o) for o in skipped)


async def test_a_rate_limit_with_retry_after_pauses_the_calls(
    fake: Running, http: HttpClient
) -> None:
    encoder = _encoder(fake, http)
    encoder.encode(EXAMPLES)
    _script(fake, "ratelimit-20")
    with pytest.raises(EmbeddingUnavailable, match="HTTP 429"):
        await encoder.aencode(["prompt 1"])
    with pytest.raises(EmbeddingUnavailable, match="skipped"):
        await encoder.aencode(["prompt 2"])
    assert fake.server.stats.requests == 2  # the examples, then the rate-limited prompt


async def test_a_blank_prompt_is_unavailable_without_a_call(
    fake: Running, http: HttpClient
) -> None:
    encoder = _encoder(fake, http)
    encoder.encode(EXAMPLES)
    with pytest.raises(EmbeddingUnavailable, match="blank"):
        await encoder.aencode(["  \n"])
    assert fake.server.stats.requests == 1


async def test_vectors_of_another_length_than_the_examples_are_refused(
    fake: Running, http: HttpClient
) -> None:
    encoder = _encoder(fake, http)
    encoder.encode(EXAMPLES)
    _script(fake, "ok")
    encoder._dimensions = 32  # as if the server now answered another model's vectors
    encoder._dim = 1536
    with pytest.raises(EmbeddingUnavailable, match="32 dimensions, expected 1536"):
        await encoder.aencode(["Please refund the invoice"])


async def test_an_encoder_without_a_shared_session_closes_its_own(fake: Running) -> None:
    encoder = _encoder(fake)
    encoder.encode(EXAMPLES)
    assert (await encoder.aencode(["Refund"])).shape == (1, 1536)
    await encoder.close()


# ---- the official SDK against the fake ---------------------------------------------------


@pytest.fixture
async def sdk() -> AsyncIterator[tuple[openai.AsyncOpenAI, Running]]:
    async with openai_server.serve() as running:
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=running.base_url, max_retries=0)
        yield client, running
        await client.close()


async def test_sdk_embeddings_base64_by_default(
    sdk: tuple[openai.AsyncOpenAI, Running],
) -> None:
    client, running = sdk
    texts = ["Refund my last invoice", "Book a flight to Paris"]
    response = await client.embeddings.create(model="text-embedding-3-small", input=texts)
    assert running.server.stats.last_body["encoding_format"] == "base64"  # the SDK's default
    assert response.object == "list" and response.model == "text-embedding-3-small"
    assert [d.index for d in response.data] == [0, 1]
    assert all(d.object == "embedding" for d in response.data)
    vectors = np.asarray([d.embedding for d in response.data], dtype=np.float32)
    assert np.allclose(vectors, _expected(texts), atol=1e-6)
    assert response.usage.prompt_tokens == response.usage.total_tokens == 9


async def test_sdk_embeddings_as_floats_with_dimensions(
    sdk: tuple[openai.AsyncOpenAI, Running],
) -> None:
    client, _ = sdk
    response = await client.embeddings.create(
        model="text-embedding-3-large",
        input="Refund my last invoice",
        encoding_format="float",
        dimensions=256,
    )
    (item,) = response.data
    assert isinstance(item.embedding, list) and len(item.embedding) == 256
    assert all(isinstance(x, float) for x in item.embedding)
    assert np.isclose(np.linalg.norm(item.embedding), 1.0)
    large = await client.embeddings.create(model="text-embedding-3-large", input="x")
    assert len(large.data[0].embedding) == 3072


async def test_sdk_embeddings_of_token_arrays(sdk: tuple[openai.AsyncOpenAI, Running]) -> None:
    client, _ = sdk
    response = await client.embeddings.create(
        model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]], encoding_format="float"
    )
    assert [len(d.embedding) for d in response.data] == [1536, 1536]
    assert response.usage.prompt_tokens == 5


@pytest.mark.parametrize(
    ("behaviour", "error", "status", "code"),
    [
        ("bad-key", openai.AuthenticationError, 401, "invalid_api_key"),
        ("ratelimit-1", openai.RateLimitError, 429, "rate_limit_exceeded"),
        ("quota", openai.RateLimitError, 429, "insufficient_quota"),
        ("error-500", openai.InternalServerError, 500, None),
    ],
)
async def test_sdk_embeddings_errors(
    sdk: tuple[openai.AsyncOpenAI, Running],
    behaviour: str,
    error: type[openai.APIStatusError],
    status: int,
    code: str | None,
) -> None:
    client, running = sdk
    running.server.script.append(Behaviour.parse(behaviour))
    with pytest.raises(error) as info:
        await client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert info.value.status_code == status
    assert info.value.code == code
    assert info.value.message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input": ""}, r"'\$\.input' is invalid"),
        ({"input": []}, r"'\$\.input' is invalid"),
        ({"input": "hi", "extra_body": {"colour": "red"}}, "Unrecognized request argument"),
        ({"input": "hi", "dimensions": 5000}, "Invalid value for 'dimensions'"),
        ({"input": " ".join(["word"] * 8193)}, "maximum context length is 8192 tokens"),
    ],
)
async def test_sdk_embeddings_bad_requests(
    sdk: tuple[openai.AsyncOpenAI, Running], kwargs: dict[str, Any], message: str
) -> None:
    client, _ = sdk
    with pytest.raises(openai.BadRequestError, match=message) as info:
        await client.embeddings.create(model="text-embedding-3-small", **kwargs)
    assert info.value.status_code == 400
    assert info.value.type == "invalid_request_error"


async def test_sdk_without_a_key_is_refused(sdk: tuple[openai.AsyncOpenAI, Running]) -> None:
    _, running = sdk
    async with openai.AsyncOpenAI(
        api_key="sk-test",
        base_url=running.base_url,
        max_retries=0,
        default_headers={"Authorization": ""},
    ) as client:
        with pytest.raises(openai.AuthenticationError, match="didn't provide an API key"):
            await client.embeddings.create(model="text-embedding-3-small", input="hi")
