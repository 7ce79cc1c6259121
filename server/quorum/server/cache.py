"""The response cache: exact-match final answers, per tenant, opt-in.

A request is looked up only when the cache is enabled, the request allows it
(``hints.allow_cache``, or ``cache.default_allow``), its data is no more sensitive than
``cache.max_sensitivity``, its temperature is unset or zero and it carries no tools —
the last two unless configured otherwise. Streams bypass it unless ``cache_streams``.

The key is a SHA-256 over the tenant, the normalised messages (Unicode NFC, line endings
unified, outer whitespace stripped), every generation parameter and every routing hint
that can change the answer; the request id and the cache opt-in are not part of it.
Tenants never share entries: the tenant is in the key and in the Redis key name.

A hit costs nothing and says so: no attempts, zero cost, ``cached`` set, and the premium
baseline's price for the same answer as the saving. Entries live in an in-process LRU
bounded by count and bytes, or in Redis (``state.redis_url``) with a TTL; a Redis error
is a miss, never a failed request.
"""

from __future__ import annotations

import hashlib
import json
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from quorum.server.catalog import ModelSpec
from quorum.server.config import CacheConfig
from quorum.server.domain import (
    Classification,
    Completion,
    Difficulty,
    ExecutionPlan,
    Reason,
    RouteRequest,
    RouteResult,
    Sensitivity,
    StageTimings,
    Strategy,
    ToolCall,
    Usage,
)
from quorum.server.values import value_type

log = structlog.get_logger("quorum.cache")

_SENSITIVITY = {
    "public": Sensitivity.PUBLIC,
    "internal": Sensitivity.INTERNAL,
    "restricted": Sensitivity.RESTRICTED,
}


@value_type
class CachedAnswer:
    """What a hit gives back: the answer and how it was first produced."""

    completion: Completion
    model: str
    provider: str
    strategy: Strategy
    classification: Classification
    stored_at: float
    simulated: bool = False

    def encode(self) -> bytes:
        c, k = self.completion, self.classification
        return json.dumps(
            {
                "content": c.content,
                "tool_calls": [[t.id, t.name, t.arguments_json] for t in c.tool_calls],
                "finish_reason": c.finish_reason,
                "usage": [c.usage.input_tokens, c.usage.output_tokens],
                "mean_logprob": c.mean_logprob,
                "model": self.model,
                "provider": self.provider,
                "strategy": self.strategy.value,
                "classification": [
                    k.task,
                    k.difficulty.value,
                    k.confidence,
                    k.classifier,
                    k.agent,
                    list(k.signals),
                ],
                "stored_at": self.stored_at,
                "simulated": self.simulated,
            },
            separators=(",", ":"),
        ).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> CachedAnswer:
        d = json.loads(data)
        task, difficulty, confidence, classifier, agent, signals = d["classification"]
        return cls(
            completion=Completion(
                content=str(d["content"]),
                tool_calls=tuple(ToolCall(str(i), str(n), str(a)) for i, n, a in d["tool_calls"]),
                finish_reason=str(d["finish_reason"]),
                usage=Usage(int(d["usage"][0]), int(d["usage"][1])),
                mean_logprob=d["mean_logprob"],
            ),
            model=str(d["model"]),
            provider=str(d["provider"]),
            strategy=Strategy(d["strategy"]),
            classification=Classification(
                str(task),
                Difficulty(int(difficulty)),
                float(confidence),
                str(classifier),
                str(agent),
                tuple(str(s) for s in signals),
            ),
            stored_at=float(d["stored_at"]),
            simulated=bool(d.get("simulated", False)),
        )


def _text(value: str) -> str:
    return unicodedata.normalize("NFC", value.replace("\r\n", "\n")).strip()


def _canonical(tenant: str, request: RouteRequest) -> bytes:
    p, h = request.params, request.hints
    doc: list[Any] = [
        1,
        tenant,
        [
            [
                m.role.value,
                _text(m.content),
                [
                    _text(part.text)
                    if part.text is not None
                    else [
                        part.image.url if part.image else "",
                        hashlib.sha256(part.image.data).hexdigest() if part.image else "",
                        part.image.media_type if part.image else "",
                    ]
                    for part in m.parts
                ],
                [[t.id, t.name, t.arguments_json] for t in m.tool_calls],
                m.tool_call_id,
                m.name,
            ]
            for m in request.messages
        ],
        [
            p.max_tokens,
            p.temperature,
            p.top_p,
            list(p.stop),
            [p.response_format.type.value, p.response_format.json_schema],
            [[t.name, t.description, t.parameters_json] for t in p.tools],
            [p.tool_choice.mode.value, p.tool_choice.tool],
            p.logprobs,
        ],
        [
            h.strategy.value,
            h.priority.value,
            h.task,
            h.agent,
            h.use_case,
            sorted(c.value for c in h.required_capabilities),
            h.max_cost_usd,
            h.model,
            h.tier,
            h.sensitivity.value if h.sensitivity is not None else 0,
            h.critical,
            h.consensus_size,
        ],
    ]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class AnswerStore(Protocol):
    async def get(self, key: str) -> CachedAnswer | None: ...

    async def put(self, key: str, answer: CachedAnswer, size: int, ttl_s: float) -> None: ...


class MemoryAnswerStore:
    """An LRU in this process, bounded by entries and bytes, with expiry."""

    def __init__(
        self, max_entries: int, max_bytes: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: OrderedDict[str, tuple[CachedAnswer, int, float]] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> CachedAnswer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[2] <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def _drop(self, key: str) -> None:
        _, size, _ = self._entries.pop(key)
        self._bytes -= size

    async def put(self, key: str, answer: CachedAnswer, size: int, ttl_s: float) -> None:
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (answer, size, self._clock() + ttl_s)
        self._bytes += size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))


class RedisAnswerStore:
    """Entries in Redis with a TTL, shared by replicas; errors are misses."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    async def get(self, key: str) -> CachedAnswer | None:
        try:
            data = await self._redis.get(key)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("cache_unavailable", op="get", error=str(exc))
            return None
        if data is None:
            return None
        try:
            return CachedAnswer.decode(data if isinstance(data, bytes) else data.encode())
        except (ValueError, KeyError, TypeError):
            log.warning("cache_entry_unreadable")
            return None

    async def put(self, key: str, answer: CachedAnswer, size: int, ttl_s: float) -> None:
        try:
            await self._redis.set(key, answer.encode(), px=max(1, int(ttl_s * 1000)))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("cache_unavailable", op="put", error=str(exc))


class ResponseCache:
    """Keys, eligibility and the store, as the router uses them."""

    def __init__(
        self, config: CacheConfig, store: AnswerStore, *, key_prefix: str = "quorum:cache"
    ) -> None:
        self.config = config
        self.store = store
        self._prefix = key_prefix
        self._max_sensitivity = _SENSITIVITY[config.max_sensitivity]

    def key(self, tenant: str, request: RouteRequest) -> str | None:
        """The cache key of ``request`` for ``tenant``, or None when it may not be cached."""
        cfg = self.config
        if not cfg.enabled or not (request.hints.allow_cache or cfg.default_allow):
            return None
        if (request.hints.sensitivity or Sensitivity.PUBLIC) > self._max_sensitivity:
            return None
        temperature = request.params.temperature
        if temperature not in (None, 0.0) and not cfg.cache_nonzero_temperature:
            return None
        if not cfg.cache_tool_calls and (
            request.params.tools or any(m.tool_calls or m.tool_call_id for m in request.messages)
        ):
            return None
        digest = hashlib.sha256(_canonical(tenant, request)).hexdigest()
        return f"{self._prefix}:{tenant}:{digest}"

    async def get(self, key: str) -> CachedAnswer | None:
        return await self.store.get(key)

    async def put(self, key: str, result: RouteResult) -> None:
        if result.completion.tool_calls and not self.config.cache_tool_calls:
            return
        answer = CachedAnswer(
            completion=result.completion,
            model=result.model,
            provider=result.provider,
            strategy=result.strategy,
            classification=result.classification,
            stored_at=time.time(),
            simulated=result.simulated,
        )
        size = len(answer.encode())
        if size > self.config.max_entry_bytes:
            return
        await self.store.put(key, answer, size, self.config.ttl_s)


def hit_result(
    request: RouteRequest, answer: CachedAnswer, baseline: ModelSpec, elapsed_ms: float
) -> RouteResult:
    """The account of a cache hit: the stored answer, no attempts, nothing spent."""
    age = max(0.0, time.time() - answer.stored_at)
    plan = ExecutionPlan(
        strategy=answer.strategy,
        stages=(),
        estimated_cost_min_usd=0.0,
        estimated_cost_max_usd=0.0,
        reasons=(
            Reason(
                "CACHE_HIT",
                f"exact-match answer from the response cache, produced by {answer.model} "
                f"{age:.0f}s ago",
            ),
        ),
        max_upstream_calls=0,
    )
    return RouteResult(
        request_id=request.request_id,
        completion=answer.completion,
        model=answer.model,
        provider=answer.provider,
        strategy=answer.strategy,
        classification=answer.classification,
        plan=plan,
        attempts=(),
        usage=Usage(),
        cost_usd=0.0,
        baseline_cost_usd=baseline.cost(answer.completion.usage),
        baseline_model=baseline.name,
        timings=StageTimings(total_ms=elapsed_ms),
        cached=True,
        simulated=answer.simulated,
    )
