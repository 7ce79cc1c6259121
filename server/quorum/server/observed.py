"""Observed figures the planner reads: escalations, voter accuracy, answer quality, and
the latency and cost of answers.

Each rate is a sliding window of recent boolean outcomes per key — for escalations the
key is a cascade route (agent × tier, :func:`~quorum.server.state.route_key`) and the
outcome "the gate failed and the cascade escalated"; for accuracy the key is model ×
task and the outcome "this model's answer agreed with the winning vote"; for quality the
key is model × task too and the outcome "the answer passed the quality gate" or "the
caller's feedback on it was good". A key reports
a rate only once it holds ``min_samples`` outcomes.

Latency and cost use the same windows with numbers instead of booleans: per model × task,
the latency (ms) and the cost (USD) of each answer the model gave. They report an
exponentially weighted average (``smoothing`` is the newest answer's weight) rather than a
plain share, so a model that slows down or gets dearer shows it within a few answers;
their window only keeps the answers that still weigh (:func:`smoothed_window`).

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
import math
from collections import deque
from collections.abc import Collection, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from quorum.server.config import Config
from quorum.server.domain import Attempt, AttemptOutcome
from quorum.server.state import accuracy_key

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


class FigureStore(Protocol):
    """Sliding windows of numbers per key (latency, cost), summarised as a weighted mean."""

    def record(self, key: str, outcome: float) -> None:
        """Add one number (never blocks, never raises)."""
        ...

    def rates(self) -> Mapping[str, float]:
        """The summary per key that has at least ``min_samples``."""
        ...

    def start(self) -> None: ...

    async def close(self) -> None: ...


# Attempts that are a model answering the request (the classifier's and the judge's calls
# answer something else), and the outcomes of an attempt that produced an answer.
_NOT_ANSWERING = frozenset({"classifier", "judge", "shadow"})
_ANSWERED = frozenset({AttemptOutcome.SUCCEEDED, AttemptOutcome.REJECTED, AttemptOutcome.OUTVOTED})


def smoothed_window(smoothing: float, min_samples: int, window: int) -> int:
    """How many recent numbers an exponentially weighted average needs: those whose weight
    is still at least 1% of the newest's (44 at 0.1), but never fewer than ``min_samples``
    nor more than ``window``."""
    fading = math.log(0.01) / math.log(1.0 - smoothing) if smoothing < 1.0 else 0.0
    needed = math.floor(fading) + 1
    return max(1, min(window, max(needed, min_samples)))


def _rate(
    outcomes: Sequence[float] | deque[float], min_samples: int, smoothing: float | None = None
) -> float | None:
    """The share of True outcomes (the mean), or with ``smoothing`` the exponentially
    weighted mean (oldest first; each older value weighs ``1 - smoothing`` times the next,
    and the weights are normalised, so a first odd value does not dominate the next
    few); None below ``min_samples``."""
    if len(outcomes) < min_samples or not outcomes:
        return None
    if smoothing is None:
        return sum(outcomes) / len(outcomes)
    weighted = weights = 0.0
    for value in outcomes:
        weighted = weighted * (1.0 - smoothing) + value
        weights = weights * (1.0 - smoothing) + 1.0
    return weighted / weights


class LocalWindows:
    """In-process windows: the default, and the fallback when Redis is unreachable.

    Booleans give the share of True outcomes; with ``smoothing`` the windows hold numbers
    and give their exponentially weighted average."""

    def __init__(self, window: int, min_samples: int, smoothing: float | None = None) -> None:
        self.window = window
        self.min_samples = min_samples
        self.smoothing = smoothing
        self._windows: dict[str, deque[float]] = {}
        self._rates: dict[str, float] = {}
        self._dirty: set[str] = set()  # keys recorded since the rates were last computed

    def record(self, key: str, outcome: float) -> None:
        series = self._windows.get(key)
        if series is None:
            if len(self._windows) >= MAX_KEYS:
                return  # full: new keys are not learned (the ones known keep learning)
            series = self._windows[key] = deque(maxlen=self.window)
        series.append(outcome)
        self._dirty.add(key)

    def knows(self, key: str) -> bool:
        return key in self._windows

    @property
    def size(self) -> int:
        return len(self._windows)

    def rates(self) -> Mapping[str, float]:
        if self._dirty:
            # Only the keys recorded since: every request records, and a full pass over
            # every key's window on each would cost far more than the request.
            rates = dict(self._rates)  # a new mapping: one handed out earlier stays as it was
            for key in self._dirty:
                rate = _rate(self._windows[key], self.min_samples, self.smoothing)
                if rate is not None:
                    rates[key] = rate
            self._dirty.clear()
            self._rates = rates
        return self._rates

    def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisWindows:
    """Windows shared through Redis lists, with :class:`LocalWindows` as the fallback.

    Outcomes are stored as ``1``/``0``, numbers (with ``smoothing``) as their decimal text."""

    def __init__(
        self,
        client: aioredis.Redis,
        name: str,
        *,
        window: int,
        min_samples: int,
        refresh_s: float,
        namespace: str = "quorum",
        smoothing: float | None = None,
    ) -> None:
        self.local = LocalWindows(window, min_samples, smoothing)
        self._smoothing = smoothing
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

    def record(self, key: str, outcome: float) -> None:
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
        numbers: list[float] = []
        for v in values:
            try:
                number = float(v.decode() if isinstance(v, bytes) else v)
            except (ValueError, UnicodeDecodeError):
                continue  # not ours: ignored rather than trusted
            if math.isfinite(number):
                numbers.append(number)
        return _rate(numbers, self._min_samples, self._smoothing)

    @staticmethod
    def _encode(outcome: float) -> str:
        if isinstance(outcome, bool):
            return "1" if outcome else "0"
        return repr(float(outcome))

    async def _push(self, key: str, outcome: float) -> None:
        redis_key = f"{self._prefix}:{key}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(redis_key, self._encode(outcome))
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
    """The observed figures of one server: escalations per route; accuracy, quality,
    latency and cost per model × task."""

    def __init__(
        self,
        escalations: OutcomeStore,
        accuracy: OutcomeStore,
        client: aioredis.Redis | None = None,
        quality: OutcomeStore | None = None,
        latency: FigureStore | None = None,
        cost: FigureStore | None = None,
    ) -> None:
        self.escalations = escalations
        self.accuracy = accuracy
        self.quality: OutcomeStore = quality or LocalWindows(200, 20)
        self.latency: FigureStore = latency or LocalWindows(44, 3, 0.1)
        self.cost: FigureStore = cost or LocalWindows(44, 3, 0.1)
        self._client = client

    def observe_answers(
        self, task: str, attempts: Iterable[Attempt], models: Collection[str]
    ) -> None:
        """Record the latency and the cost of every answer one of ``models`` gave to a
        request on ``task`` (failed, skipped and cancelled calls, the classifier's and the
        judge's, are not answers to it)."""
        for attempt in attempts:
            if attempt.outcome not in _ANSWERED or attempt.role in _NOT_ANSWERING:
                continue
            if attempt.model not in models:
                continue
            key = accuracy_key(attempt.model, task)
            if math.isfinite(attempt.latency_ms) and attempt.latency_ms >= 0:
                self.latency.record(key, attempt.latency_ms)
            if math.isfinite(attempt.cost_usd) and attempt.cost_usd >= 0:
                self.cost.record(key, attempt.cost_usd)

    def start(self) -> None:
        self.escalations.start()
        self.accuracy.start()
        self.quality.start()
        self.latency.start()
        self.cost.start()

    async def close(self) -> None:
        await self.escalations.close()
        await self.accuracy.close()
        await self.quality.close()
        await self.latency.close()
        await self.cost.close()
        if self._client is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_WAIT_S):
                    await self._client.aclose()


def build_observed(config: Config) -> ObservedState:
    """In-process windows, or Redis-shared ones when ``state.redis_url`` is set."""
    cascade, consensus = config.routing.cascade, config.routing.consensus
    performance = config.routing.performance
    smoothing, figures_min = performance.smoothing, performance.latency_cost_min_samples
    figures_window = smoothed_window(smoothing, figures_min, max(performance.window, figures_min))
    state = config.state
    if not state.redis_url:
        return ObservedState(
            LocalWindows(cascade.window, cascade.min_samples),
            LocalWindows(consensus.accuracy_window, consensus.accuracy_min_samples),
            quality=LocalWindows(performance.window, performance.min_samples),
            latency=LocalWindows(figures_window, figures_min, smoothing),
            cost=LocalWindows(figures_window, figures_min, smoothing),
        )
    client = aioredis.Redis.from_url(
        state.redis_url,
        socket_timeout=state.redis_timeout_s,
        socket_connect_timeout=state.redis_timeout_s,
    )

    def shared(
        name: str, window: int, min_samples: int, smooth: float | None = None
    ) -> RedisWindows:
        return RedisWindows(
            client,
            name,
            window=window,
            min_samples=min_samples,
            refresh_s=state.refresh_interval_s,
            namespace=state.namespace,
            smoothing=smooth,
        )

    return ObservedState(
        shared("escalation", cascade.window, cascade.min_samples),
        shared("accuracy", consensus.accuracy_window, consensus.accuracy_min_samples),
        client,
        quality=shared("quality", performance.window, performance.min_samples),
        latency=shared("latency", figures_window, figures_min, smoothing),
        cost=shared("cost", figures_window, figures_min, smoothing),
    )
