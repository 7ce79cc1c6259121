"""Sentence embeddings from an OpenAI-compatible ``POST {base_url}/embeddings`` endpoint.

``classifier.embedding.remote`` names a provider of kind ``openai`` (OpenAI, Azure
OpenAI's v1 API, vLLM, Ollama, llama.cpp's server, text-embeddings-inference, gateways)
and an embedding model. The request is OpenAI's ``{"model", "input": [texts],
"dimensions"?}`` with the provider's ``headers`` and its API key as ``Authorization:
Bearer`` (as the chat adapter sends them), never to another host: a redirect is not
followed, and fails like a 4xx (see :mod:`.http`). No ``encoding_format`` is sent, so the
answer is the API's default, floats (a base64 answer is read too). The vectors are put
back in ``index`` order and each scaled to unit length, so the semantic routes' dot
product is the cosine similarity whatever the server returns.

Two kinds of call:

* **At start-up** (:meth:`RemoteEncoder.encode`, blocking) every example utterance is
  embedded once, in batches of :data:`_BATCH` texts, each batch within the provider's
  ``timeout_s`` and tried up to :data:`_STARTUP_ATTEMPTS` times on a transient failure
  (5xx, 408, 429, timeout, connection). What still fails raises
  :class:`EmbeddingUnavailable`, which ``build_classifier`` turns into a ``ConfigError``
  naming ``classifier.embedding.remote``: ``quorum serve`` refuses to start rather than
  serve semantic routes it cannot compute. The calls run on a helper thread with its
  own event loop and a short-lived session: the router is built synchronously, perhaps
  inside the loop that will serve.
* **Per request** (:meth:`RemoteEncoder.aencode`) the prompt is embedded within
  ``classifier.embedding.remote.timeout_s`` (0.3 s) on the session every provider shares.
  Any failure (an error status, a timeout, a malformed answer) is logged
  (``remote_embedding_failed``) and raised as :class:`EmbeddingUnavailable`: the
  classifier chain then goes on without the embedding step, which never fails the
  request. After :data:`_FAIL_MAX` consecutive failures calls are skipped for
  :data:`_COOL_DOWN_S` (a 429's Retry-After, up to :data:`_MAX_COOL_DOWN_S`, skips them
  at once), then one call probes; a skipped request goes on at once instead of waiting
  out the timeout.

Prompts embedded lately are kept in an LRU cache, so the task and agent routes of one
request make one call, and a repeated prompt none. Texts are cut to their first
:data:`_MAX_CHARS` characters: enough to recognise a route (MiniLM reads 256 word pieces,
about 1,000 characters) and within every embedding model's input limit. A blank text is
never sent (the API refuses empty input): a blank example matches nothing, and a blank
prompt goes on without the embedding step.

Not billed: the account prices the LLM classifier's calls from the model catalog, and an
embedding model has no catalog entry, so these calls are not attempts in the account
(the tokens the examples took are logged at start-up).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import structlog
from pydantic import SecretStr

from quorum.server.classify.embedding import EmbeddingUnavailable
from quorum.server.config import ProviderConfig
from quorum.server.config.routing import RemoteEmbeddingConfig
from quorum.server.errors import (
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from quorum.server.providers import sse
from quorum.server.providers.http import HttpClient, timeout_for

Array = npt.NDArray[np.float32]

_BATCH = 128  # texts per start-up request (OpenAI takes 2,048 and 300,000 tokens)
_MAX_CHARS = 2000
_STARTUP_ATTEMPTS = 3
_STARTUP_BACKOFF_S = 0.5  # then 1 s; a Retry-After up to _MAX_STARTUP_WAIT_S instead
_MAX_STARTUP_WAIT_S = 10.0
_FAIL_MAX = 5
_COOL_DOWN_S = 30.0
_MAX_COOL_DOWN_S = 60.0

log = structlog.get_logger("quorum.embeddings")


class RemoteEncoder:
    """An OpenAI-compatible embeddings endpoint as the semantic routes' encoder."""

    def __init__(
        self,
        provider: str,
        config: ProviderConfig,
        settings: RemoteEmbeddingConfig,
        api_key: SecretStr | None,
        http: HttpClient | None = None,
        *,
        cache_size: int = 4096,
    ) -> None:
        self._name = provider
        self.url = f"{config.base_url}/embeddings"
        self.model = settings.model
        self._dimensions = settings.dimensions
        self._timeout_s = settings.timeout_s
        self._startup_timeout_s = config.timeout_s
        self._connect_s = config.connect_timeout_s
        self._headers = dict(config.headers)
        if api_key is not None:
            self._headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
        # The session every provider shares, when given; otherwise one of its own (close()).
        self._owns_http = http is None
        self._http = http if http is not None else HttpClient()
        self._dim: int | None = None
        self._cache: OrderedDict[bytes, Array] = OrderedDict()
        self._cache_size = cache_size
        self._failures = 0  # consecutive, per request
        self._cool_until = 0.0  # time.monotonic() before which calls are skipped
        self.startup_tokens = 0  # prompt tokens the endpoint reported for the examples

    @property
    def dim(self) -> int | None:
        """The vectors' length, once the examples are embedded."""
        return self._dim

    # ---- start-up ------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> Array:
        """Unit vectors of ``texts`` (the example utterances), blocking until done.

        Raises :class:`EmbeddingUnavailable` with the reason when the endpoint cannot
        embed them (after retries of transient failures).
        """
        batch = list(texts)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="remote-embeddings") as pool:
            return pool.submit(asyncio.run, self._encode_all(batch)).result()

    async def _encode_all(self, texts: list[str]) -> Array:
        cut = [_cut(t) for t in texts]
        sent = [i for i, t in enumerate(cut) if t.strip()]
        if not sent:
            raise EmbeddingUnavailable("every example utterance is blank")
        http = HttpClient()
        try:
            rows = [
                await self._startup_batch(http, [cut[i] for i in sent[start : start + _BATCH]])
                for start in range(0, len(sent), _BATCH)
            ]
        finally:
            await http.close()
        vectors = np.concatenate(rows)
        out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        out[sent] = vectors
        return out

    async def _startup_batch(self, http: HttpClient, texts: list[str]) -> Array:
        limit = timeout_for(self._startup_timeout_s, self._connect_s)
        for attempt in range(1, _STARTUP_ATTEMPTS + 1):
            try:
                vectors, tokens = await self._embed(http, texts, limit)
            except ProviderError as exc:
                if attempt == _STARTUP_ATTEMPTS or not _transient(exc):
                    raise EmbeddingUnavailable(self._why(exc, len(texts))) from exc
                wait = _STARTUP_BACKOFF_S * attempt
                if isinstance(exc, ProviderRateLimited) and exc.retry_after_s is not None:
                    wait = min(exc.retry_after_s, _MAX_STARTUP_WAIT_S)
                log.warning(
                    "remote_embedding_retry",
                    provider=self._name,
                    model=self.model,
                    attempt=attempt,
                    error=exc.message,
                    wait_s=wait,
                )
                await asyncio.sleep(wait)
                continue
            self.startup_tokens += tokens or 0
            return vectors
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _why(self, exc: ProviderError, count: int) -> str:
        return (
            f"could not embed {count} example utterance{'' if count == 1 else 's'} with "
            f"model {self.model!r} at "
            f"{self.url} (provider {self._name!r}): {exc.message}"
        )

    # ---- per request -----------------------------------------------------------------

    async def aencode(self, texts: Sequence[str]) -> Array:
        """Unit vectors of ``texts`` within ``timeout_s``; cached texts at once.

        Raises :class:`EmbeddingUnavailable` when the endpoint fails, is too slow or is
        cooling down after failures (failures are logged here).
        """
        dim = self._dim
        if dim is None:
            raise EmbeddingUnavailable("no example utterances were embedded")
        cut = [_cut(t) for t in texts]
        keys = [_key(t) for t in cut]
        out = np.zeros((len(cut), dim), dtype=np.float32)
        todo: list[int] = []
        for i, key in enumerate(keys):
            hit = self._cache.get(key)
            if hit is None:
                todo.append(i)
            else:
                self._cache.move_to_end(key)
                out[i] = hit
        if not todo:
            return out
        if any(not cut[i].strip() for i in todo):
            raise EmbeddingUnavailable("nothing to embed: the text is blank")
        started = time.monotonic()
        if started < self._cool_until:
            raise EmbeddingUnavailable(
                f"{self._name}: embeddings skipped for {self._cool_until - started:.1f}s "
                "more after failures"
            )
        if self._failures >= _FAIL_MAX:
            # Cooled down: this call probes; the others keep skipping until it is back.
            self._cool_until = started + self._timeout_s
        limit = timeout_for(self._timeout_s, self._connect_s)
        try:
            async with asyncio.timeout(self._timeout_s):
                vectors, _ = await self._embed(self._http, [cut[i] for i in todo], limit)
        except (ProviderError, TimeoutError) as exc:
            error = (
                exc
                if isinstance(exc, ProviderError)
                else ProviderTimeout(
                    f"{self._name}: no answer within {self._timeout_s:g}s", provider=self._name
                )
            )
            self._failed(error, time.monotonic() - started)
            raise EmbeddingUnavailable(error.message) from exc
        self._failures = 0
        self._cool_until = 0.0  # a probe that answered ends the pause for everyone
        for row, i in enumerate(todo):
            out[i] = vectors[row]
            self._cache[keys[i]] = vectors[row].copy()
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out

    def _failed(self, error: ProviderError, elapsed_s: float) -> None:
        self._failures += 1
        cool = _COOL_DOWN_S if self._failures >= _FAIL_MAX else 0.0
        if isinstance(error, ProviderRateLimited) and error.retry_after_s:
            cool = max(cool, min(error.retry_after_s, _MAX_COOL_DOWN_S))
        if cool:
            self._cool_until = time.monotonic() + cool
        log.warning(
            "remote_embedding_failed",
            provider=self._name,
            model=self.model,
            reason=error.reason,
            error=error.message,
            elapsed_ms=round(elapsed_s * 1000.0, 1),
            consecutive=self._failures,
            skip_calls_s=cool or None,
        )

    # ---- the call ----------------------------------------------------------------------

    async def _embed(
        self, http: HttpClient, texts: list[str], limit: aiohttp.ClientTimeout
    ) -> tuple[Array, int | None]:
        body: dict[str, Any] = {"model": self.model, "input": texts}
        if self._dimensions is not None:
            body["dimensions"] = self._dimensions
        answer = await sse.post_json(
            http, self._name, self.url, body, headers=self._headers, time_limit=limit
        )
        vectors, tokens = read_embeddings(self._name, answer, len(texts))
        width = vectors.shape[1]
        expected = self._dim or self._dimensions
        if expected is not None and width != expected:
            raise ProviderBadResponse(
                f"{self._name}: vectors of {width} dimensions, expected {expected}",
                provider=self._name,
            )
        self._dim = width
        return vectors, tokens

    async def close(self) -> None:
        """Close the session, if this encoder made its own."""
        if self._owns_http:
            await self._http.close()


def read_embeddings(provider: str, answer: Any, count: int) -> tuple[Array, int | None]:
    """The ``count`` vectors of an embeddings answer in input order, each of unit length
    (a zero vector stays zero), and the prompt tokens it reports (None when it does not).

    Raises :class:`ProviderBadResponse` for anything but OpenAI's shape: ``data`` with one
    ``{"index", "embedding"}`` per input, every embedding a list of finite numbers (or
    base64 little-endian float32) of one length.
    """
    try:
        data = answer["data"]
        if not isinstance(data, list) or len(data) != count:
            raise ValueError(f"{count} inputs, {len(data) if isinstance(data, list) else 0} data")
        rows: list[npt.NDArray[np.float32] | None] = [None] * count
        for position, item in enumerate(data):
            index = item.get("index", position)
            if not isinstance(index, int) or not 0 <= index < count or rows[index] is not None:
                raise ValueError(f"data[{position}].index {index!r} is not a new input index")
            rows[index] = _vector(item["embedding"])
        widths = {len(row) for row in rows if row is not None}
        if len(widths) != 1 or 0 in widths:
            raise ValueError(f"vectors of lengths {sorted(widths)}")
        matrix = np.stack([row for row in rows if row is not None])
        if not np.isfinite(matrix).all():
            raise ValueError("a vector has a value that is not finite")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ProviderBadResponse(
            f"{provider}: unexpected embeddings shape: {exc}", provider=provider
        ) from exc
    lengths = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: Array = np.asarray(matrix / np.maximum(lengths, 1e-12), dtype=np.float32)
    return unit, _prompt_tokens(answer.get("usage"))


def _vector(value: Any) -> npt.NDArray[np.float32]:
    if isinstance(value, str):  # encoding_format "base64": little-endian float32
        return np.frombuffer(base64.b64decode(value, validate=True), dtype="<f4").astype(np.float32)
    if not isinstance(value, list) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in value
    ):
        raise TypeError("an embedding is not a list of numbers")
    return np.asarray(value, dtype=np.float32)


def _prompt_tokens(usage: Any) -> int | None:
    tokens = usage.get("prompt_tokens") if isinstance(usage, Mapping) else None
    if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0:
        return tokens
    if isinstance(tokens, float) and math.isfinite(tokens) and tokens >= 0:
        return int(tokens)
    return None


def _transient(error: ProviderError) -> bool:
    """Worth another try at start-up: unavailable (5xx, 408, connection), a timeout, a
    rate limit. Not a bad key, a refused request or exhausted quota."""
    return isinstance(error, (ProviderUnavailable, ProviderTimeout, ProviderRateLimited))


def _cut(text: str) -> str:
    return text[:_MAX_CHARS]


def _key(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()
