"""Observed outcome rates the planner reads: escalations, voter accuracy, answer quality.

Each rate is a sliding window of recent boolean outcomes per key — for escalations the
key is a cascade route (agent × tier, :func:`~quorum.server.state.route_key`) and the
outcome "the gate failed and the cascade escalated"; for accuracy the key is model ×
task and the outcome "this model's answer agreed with the winning vote"; for quality the
key is model × task too and the outcome "the answer passed the quality gate" or "the
caller's feedback on it was good". A key reports
a rate only once it holds ``min_samples`` outcomes.

Two implementations sit behind :class:`OutcomeStore`:

* :class:`LocalWindows` — in-process deques, for one replica (the default).
* :class:`RedisWindows` — one Redis list per key, trimmed to the window, shared by every
  replica (when ``state.redis_url`` is set). Writes go out in the background; reads come
  from a local view refreshed every ``state.refresh_interval_s``, so the request path
  never waits for Redis. Every outcome is also kept locally: when Redis fails, the
  local windows answer, a warning is logged once, and no request fails because of it.

The planner never sees these objects, only the frozen rates in a
:class:`~quorum.server.state.StateSnapshot`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Coroutine, Mapping
from typing import Any, Protocol

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from quorum.server.config import Config

log = structlog.get_logger("quorum.observed")

_KEY_TTL_S = 7 * 24 * 3600  # an idle route's history expires after a week
# Keys come partly from callers (a task hint): at most this many are kept per store, so
# no caller can grow the state (or every replica's refresh of it) without bound.
MAX_KEYS = 10_000
_CLOSE_WAIT_S = 1.0


class OutcomeStore(Protocol):
    """Sliding windows of boolean outcomes per key."""

    def record(self, key: str, outcome: bool) -> None:
        """Add one outcome (never blocks, never raises)."""
        ...

    def rates(self) -> Mapping[str, float]:
        """Share of True outcomes per key that has at least ``min_samples``."""
        ...

    def start(self) -> None:
        """Begin background work; call from inside the running event loop."""
        ...

    async def close(self) -> None: ...


def _rate(outcomes: deque[bool] | list[bool], min_samples: int) -> float | None:
    if len(outcomes) < min_samples:
        return None
    return sum(outcomes) / len(outcomes)


class LocalWindows:
    """In-process windows: the default, and the fallback when Redis is unreachable."""

    def __init__(self, window: int, min_samples: int) -> None:
        self.window = window
        self.min_samples = min_samples
        self._windows: dict[str, deque[bool]] = {}
        self._rates: dict[str, float] | None = None

    def record(self, key: str, outcome: bool) -> None:
        series = self._windows.get(key)
        if series is None:
            if len(self._windows) >= MAX_KEYS:
                return  # full: new keys are not learned (the ones known keep learning)
            series = self._windows[key] = deque(maxlen=self.window)
        series.append(outcome)
        self._rates = None

    def knows(self, key: str) -> bool:
        return key in self._windows

    @property
    def size(self) -> int:
        return len(self._windows)

    def rates(self) -> Mapping[str, float]:
        if self._rates is None:
            computed = {k: _rate(v, self.min_samples) for k, v in self._windows.items()}
            self._rates = {k: r for k, r in computed.items() if r is not None}
        return self._rates

    def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisWindows:
    """Windows shared through Redis lists, with :class:`LocalWindows` as the fallback."""

    def __init__(
        self,
        client: aioredis.Redis,
        name: str,
        *,
        window: int,
        min_samples: int,
        refresh_s: float,
        namespace: str = "quorum",
    ) -> None:
        self.local = LocalWindows(window, min_samples)
        self._redis = client
        self._prefix = f"{namespace}:observed:{name}"
        self._index = f"{self._prefix}:keys"
        self._name = name
        self._window = window
        self._min_samples = min_samples
        self._refresh_s = refresh_s
        self._remote: dict[str, float] = {}
        self._healthy = False
        self._warned = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def healthy(self) -> bool:
        """Whether the last Redis round trip worked (rates then come from Redis)."""
        return self._healthy

    def record(self, key: str, outcome: bool) -> None:
        known = key in self._remote or self.local.knows(key)
        if not known and max(len(self._remote), self.local.size) >= MAX_KEYS:
            return  # full: new keys are not learned (the ones known keep learning)
        self.local.record(key, outcome)
        self._spawn(self._push(key, outcome))

    def rates(self) -> Mapping[str, float]:
        return self._remote if self._healthy else self.local.rates()

    def start(self) -> None:
        if self._closed or (self._refresher is not None and not self._refresher.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the event loop: start on a later call
            return
        self._refresher = loop.create_task(self._refresh_loop())

    async def close(self) -> None:
        # Bounded waits only: a cancellation swallowed inside a Redis call must not hold
        # up shutdown; the loop also stops on the flag.
        self._closed = True
        pending = set(self._tasks)
        if self._refresher is not None:
            self._refresher.cancel()
            pending.add(self._refresher)
        if pending:
            await asyncio.wait(pending, timeout=_CLOSE_WAIT_S)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._closed:
            work.close()
            return
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # no loop: a synchronous caller; the local window has it
            work.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ok(self) -> None:
        if not self._healthy and self._warned:
            log.info("observed_redis_recovered", store=self._name)
        self._healthy = True
        self._warned = False

    def _failed(self, exc: BaseException) -> None:
        self._healthy = False
        if not self._warned:
            log.warning(
                "observed_redis_unavailable",
                store=self._name,
                error=f"{type(exc).__name__}: {exc}",
                fallback="in-process windows",
            )
            self._warned = True

    def _rate_of(self, values: list[Any]) -> float | None:
        outcomes = [v in (b"1", "1") for v in values]
        return _rate(outcomes, self._min_samples)

    async def _push(self, key: str, outcome: bool) -> None:
        redis_key = f"{self._prefix}:{key}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(redis_key, "1" if outcome else "0")
                pipe.ltrim(redis_key, -self._window, -1)
                pipe.expire(redis_key, _KEY_TTL_S)
                pipe.sadd(self._index, key)
                pipe.expire(self._index, _KEY_TTL_S)  # (the set goes when no key is written)
                pipe.lrange(redis_key, 0, -1)
                results: list[Any] = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return
        rate = self._rate_of(results[-1])
        if rate is not None:
            self._remote[key] = rate
        self._ok()

    async def refresh(self) -> None:
        """Read every key's window from Redis into the local view."""
        try:
            members = sorted(
                m.decode() if isinstance(m, bytes) else str(m)
                for m in await self._redis.srandmember(self._index, MAX_KEYS) or ()
            )
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in members:
                    pipe.lrange(f"{self._prefix}:{key}", 0, -1)
                windows: list[Any] = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return
        remote: dict[str, float] = {}
        expired: list[str] = []
        for key, values in zip(members, windows, strict=True):
            if not values:
                expired.append(key)  # its window expired: the index forgets it too
                continue
            rate = self._rate_of(values)
            if rate is not None:
                remote[key] = rate
        if expired:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await self._redis.srem(self._index, *expired)
        self._remote = remote
        self._ok()

    async def _refresh_loop(self) -> None:
        while not self._closed:
            await self.refresh()
            await asyncio.sleep(self._refresh_s)


class ObservedState:
    """The observed rates of one server: escalations per route, accuracy per model × task."""

    def __init__(
        self,
        escalations: OutcomeStore,
        accuracy: OutcomeStore,
        client: aioredis.Redis | None = None,
        quality: OutcomeStore | None = None,
    ) -> None:
        self.escalations = escalations
        self.accuracy = accuracy
        self.quality: OutcomeStore = quality or LocalWindows(200, 20)
        self._client = client

    def start(self) -> None:
        self.escalations.start()
        self.accuracy.start()
        self.quality.start()

    async def close(self) -> None:
        await self.escalations.close()
        await self.accuracy.close()
        await self.quality.close()
        if self._client is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_WAIT_S):
                    await self._client.aclose()


def build_observed(config: Config) -> ObservedState:
    """In-process windows, or Redis-shared ones when ``state.redis_url`` is set."""
    cascade, consensus = config.routing.cascade, config.routing.consensus
    performance = config.routing.performance
    state = config.state
    if not state.redis_url:
        return ObservedState(
            LocalWindows(cascade.window, cascade.min_samples),
            LocalWindows(consensus.accuracy_window, consensus.accuracy_min_samples),
            quality=LocalWindows(performance.window, performance.min_samples),
        )
    client = aioredis.Redis.from_url(
        state.redis_url,
        socket_timeout=state.redis_timeout_s,
        socket_connect_timeout=state.redis_timeout_s,
    )
    return ObservedState(
        RedisWindows(
            client,
            "escalation",
            window=cascade.window,
            min_samples=cascade.min_samples,
            refresh_s=state.refresh_interval_s,
            namespace=state.namespace,
        ),
        RedisWindows(
            client,
            "accuracy",
            window=consensus.accuracy_window,
            min_samples=consensus.accuracy_min_samples,
            refresh_s=state.refresh_interval_s,
            namespace=state.namespace,
        ),
        client,
        quality=RedisWindows(
            client,
            "quality",
            window=performance.window,
            min_samples=performance.min_samples,
            refresh_s=state.refresh_interval_s,
            namespace=state.namespace,
        ),
    )
