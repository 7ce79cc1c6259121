"""What sharing breaker state through Redis costs, on the request path and off it.

    .venv/bin/python -m bench.shared_state_cost [--breakers 20] [--calls 20000]

Starts a ``redis-server`` on a free port and measures, in this process:

* **hot path**: one guarded call (``breakers.guard`` + ``health``, what every upstream
  call pays) with in-memory breakers, with Quorum's Redis-shared breakers (a local
  view), and — for comparison — with pybreaker's ``CircuitRedisStorage`` used
  directly, which does blocking round trips on the event loop;
* **background**: one refresh cycle (send the recorded writes, read every breaker and
  cool-down back) — its round trip, spent in a worker thread, and the work it does on
  the event loop when applying the reply.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import pybreaker
import redis

from bench.stream_ttft import start_redis
from quorum.server.config import BreakerConfig, StateConfig
from quorum.server.observability.logs import configure_logging
from quorum.server.resilience.breakers import Breakers
from quorum.server.resilience.shared_state import build_shared_state


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    for _ in range(min(calls, 1000)):
        fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def guarded(breakers: Breakers, key: str) -> Callable[[], object]:
    def call() -> object:
        breakers.health(key)
        with breakers.guard(key):
            return None

    return call


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--breakers", type=int, default=20)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args()
    configure_logging("warning")
    proc, url = start_redis()
    config = {f"p{i}": BreakerConfig(fail_max=1000) for i in range(args.breakers)}
    try:
        memory = Breakers(config)
        shared_state = build_shared_state(StateConfig(redis_url=url, refresh_interval_s=60))
        assert shared_state is not None
        shared = Breakers(config, shared=shared_state)
        client = redis.Redis.from_url(url)
        direct = Breakers(
            config,
            storage_factory=lambda key: pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED, client, namespace=f"direct:{key}"
            ),
        )
        hot = {
            "in-memory breakers": per_call_us(guarded(memory, "p0"), args.calls),
            "Redis-shared (local view)": per_call_us(guarded(shared, "p0"), args.calls),
            "CircuitRedisStorage directly": per_call_us(
                guarded(direct, "p0"), max(200, args.calls // 20)
            ),
        }
        for i in range(args.breakers):  # give every cycle some writes to send
            shared.cool_down(f"p{i}", 60.0)
        round_trips: list[float] = []
        for i in range(args.cycles):
            shared.cool_down(f"p{i % args.breakers}", 61.0 + i)
            t0 = time.perf_counter()
            ok = await shared_state.sync_once()
            round_trips.append((time.perf_counter() - t0) * 1000.0)
            assert ok
        stats = shared_state.stats.summary()
        await shared_state.close()
        client.close()
    finally:
        proc.terminate()
        proc.wait(10)

    print(f"hot path: one guarded call (health + guard), {args.breakers} breakers")
    for name, us in hot.items():
        print(f"  {name:30} {us:9.2f} µs per call")
    print(
        f"  shared state adds {hot['Redis-shared (local view)'] - hot['in-memory breakers']:+.2f}"
        f" µs per call; using CircuitRedisStorage directly would block the loop "
        f"{hot['CircuitRedisStorage directly']:.0f} µs per call"
    )
    print(f"background refresh ({args.cycles} cycles, {args.breakers} breakers + cool-downs):")
    print(
        f"  round trip in a worker thread: mean {stats['round_trip_ms_mean']:.3f} ms, "
        f"max {stats['round_trip_ms_max']:.3f} ms; whole cycle as awaited: "
        f"p50 {statistics.median(round_trips):.3f} ms"
    )
    print(
        f"  work on the event loop per cycle: mean {stats['loop_ms_mean']:.3f} ms, "
        f"max {stats['loop_ms_max']:.3f} ms (every 250 ms by default)"
    )


if __name__ == "__main__":
    asyncio.run(main())
