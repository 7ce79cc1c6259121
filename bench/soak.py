"""Soak: many requests of mixed strategies while the upstream misbehaves.

    .venv/bin/python -m bench.soak [--requests 200000] [--concurrency 32]

Two fake OpenAI upstreams, each its own process: *steady* always answers; *faulty*
goes through phases of faults queued through its ``/_control/script``: 5xx bursts,
429 storms with ``Retry-After``, answers slower than the provider timeout, and
dropped connections, with quiet phases between. The faulty provider's models are
the cheaper ones, so the planner tries them first and every strategy meets the
faults: single (failover), cascade and consensus (majority), plus a share of
RouteStream calls and of calls whose deadline is too short to be met.

Every request must end with an answer or a status that fits it:

* normal deadline → OK (the steady provider can always answer);
* a deadline too short for any answer → OK or DEADLINE_EXCEEDED;
* never INTERNAL or UNKNOWN, never lost (no status at all, or no end of stream).

Also checked: the faulty provider's breaker opens during the faults and is closed
again at the end (read from the Plan RPC every half second), and the server's RSS
grows by at most 10 MB between the end of the warm-up and the end. The decision
log's id index (default 100,000 ids) is set to 10,000 here so that it is full by the
end of the warm-up: a full bounded cache is not a leak.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import yaml

from bench._harness import free_port, rss_mb, start_fake_upstream, start_quorum, wait_serving
from quorum.route.v1 import route_service_pb2 as svc_pb
from quorum.route.v1 import route_service_pb2_grpc as svc_grpc
from quorum.route.v1 import types_pb2 as pb

KEY_ENV = "BENCH_UPSTREAM_KEY"
PROMPTS = (
    "What are your opening hours?",
    "Summarize the key points of this memo: revenue is up, costs are flat.",
    "Write a python function that reverses a list and explain it step by step.",
    "What is 17 * 23?",
)
STRATEGIES = (
    ("auto", pb.STRATEGY_AUTO),
    ("single", pb.STRATEGY_SINGLE),
    ("cascade", pb.STRATEGY_CASCADE),
    ("consensus", pb.STRATEGY_CONSENSUS_MAJORITY),
)
# Faults queued on the faulty upstream, one phase after another, each for so many
# of its requests; "quiet" clears the script.
PHASES: tuple[tuple[str, str, int], ...] = (
    ("quiet", "", 0),
    ("5xx burst", "error-503", 300),
    ("quiet", "", 0),
    ("429 storm", "ratelimit-1", 300),
    ("quiet", "", 0),
    ("slow past the timeout", "slow-1500", 60),
    ("quiet", "", 0),
    ("dropped connections", "drop", 200),
    ("quiet", "", 0),
    ("500s and drops", "error-500", 150),
)
NORMAL_DEADLINE_S = 5.0
SHORT_DEADLINE_S = 0.05  # met only when the first answer comes at once


def quorum_config(steady: str, faulty: str) -> dict[str, Any]:
    def provider(url: str, timeout_s: float) -> dict[str, Any]:
        return {
            "kind": "openai",
            "base_url": url,
            "api_key_env": KEY_ENV,
            "timeout_s": timeout_s,
            "max_connections": 256,
            "breaker": {"fail_max": 5, "reset_timeout_s": 2.0},
            "retry": {"max_retries": 1, "max_rate_limit_wait_s": 0.0},
        }

    def model(provider_name: str, tier: str, price: float) -> dict[str, Any]:
        return {
            "provider": provider_name,
            "tier": tier,
            "model_id": "ok",
            "input_usd_per_mtok": price,
            "output_usd_per_mtok": price * 4,
        }

    return {
        "server": {"log_level": "warning", "max_concurrent_rpcs": 2048},
        "providers": {"faulty": provider(faulty, 0.5), "steady": provider(steady, 5.0)},
        "tiers": ["cheap", "mid", "premium"],
        "models": {
            "faulty-cheap": model("faulty", "cheap", 0.1),
            "steady-cheap": model("steady", "cheap", 0.2),
            "faulty-mid": model("faulty", "mid", 1.0),
            "steady-mid": model("steady", "mid", 2.0),
            "steady-premium": model("steady", "premium", 5.0),
        },
        "routing": {
            "consensus": {"size": 3, "early_exit": True},
            "cascade": {"gate": {"min_mean_logprob": None}},
        },
        "decisions": {"max_entries": 10_000},
    }


@dataclass
class Tally:
    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, status)
    unexpected: Counter[tuple[str, str]] = field(default_factory=Counter)
    lost: int = 0
    done: int = 0
    examples: dict[str, str] = field(default_factory=dict)


@dataclass
class Breaker:
    states: Counter[str] = field(default_factory=Counter)
    opened: int = 0
    last: str = ""
    timeline: list[tuple[float, str]] = field(default_factory=list)


def request_for(i: int) -> tuple[str, pb.RouteRequest, float, bool]:
    """The i-th request: its kind, message, deadline and whether to stream it."""
    name, strategy = STRATEGIES[i % len(STRATEGIES)]
    short = (i // len(STRATEGIES)) % 10 == 7  # every strategy gets its share of each
    stream = (i // len(STRATEGIES)) % 10 == 3
    request = pb.RouteRequest(
        messages=[pb.Message(role=pb.ROLE_USER, content=PROMPTS[(i // 4) % len(PROMPTS)])],
        hints=pb.RoutingHints(strategy=strategy),
    )
    kind = f"{name}{' stream' if stream else ''}{' short-deadline' if short else ''}"
    return kind, request, SHORT_DEADLINE_S if short else NORMAL_DEADLINE_S, stream


def expected(kind: str, status: str) -> bool:
    if status in ("INTERNAL", "UNKNOWN"):
        return False
    if "short-deadline" in kind:
        return status in ("OK", "DEADLINE_EXCEEDED")
    return status == "OK"


async def one(stub: Any, i: int, tally: Tally) -> None:
    """One call through ``stub`` (an aio RouteServiceStub), counted in ``tally``."""
    kind, request, deadline, stream = request_for(i)
    status = "OK"
    try:
        async with asyncio.timeout(deadline + 10):
            if stream:
                final = False
                call = stub.RouteStream(
                    svc_pb.RouteStreamRequest(request=request), timeout=deadline
                )
                async for event in call:
                    which = event.WhichOneof("event")
                    if which == "final":
                        final = True
                    elif which == "error":
                        status = "STREAM_ERROR:" + event.error.reason
                        final = True
                if not final:
                    status = "LOST(stream without end)"
            else:
                await stub.Route(request, timeout=deadline)
    except grpc.aio.AioRpcError as exc:
        status = exc.code().name
        tally.examples.setdefault(f"{kind} {status}", (exc.details() or "")[:200])
    except TimeoutError:
        status = "LOST(no answer)"
    tally.done += 1
    tally.by_kind[(kind, status)] += 1
    if status.startswith("LOST"):
        tally.lost += 1
    if not expected(kind, status.split(":")[0]):
        tally.unexpected[(kind, status)] += 1


async def watch_breaker(address: str, breaker: Breaker, stop: asyncio.Event) -> None:
    names = {v: k.removeprefix("BREAKER_STATE_").lower() for k, v in pb.BreakerState.items()}
    request = svc_pb.PlanRequest(
        request=pb.RouteRequest(messages=[pb.Message(role=pb.ROLE_USER, content="hi")])
    )
    t0 = time.monotonic()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = svc_grpc.RouteServiceStub(channel)
        while not stop.is_set():
            try:
                plan = await stub.Plan(request, timeout=2)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.5)
                continue
            for provider in plan.providers:
                if provider.provider != "faulty":
                    continue
                state = names.get(provider.breaker_state, "?")
                breaker.states[state] += 1
                if state == "open" and breaker.last != "open":
                    breaker.opened += 1
                if state != breaker.last:
                    breaker.timeline.append((round(time.monotonic() - t0, 1), state))
                breaker.last = state
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    steady_proc, steady = start_fake_upstream("openai")
    faulty_proc, faulty = start_fake_upstream("openai")
    tmp = Path(tempfile.mkdtemp(prefix="quorum-soak-"))
    config = tmp / "soak.yaml"
    config.write_text(yaml.safe_dump(quorum_config(steady, faulty)))
    address = f"127.0.0.1:{free_port()}"
    os.environ[KEY_ENV] = "sk-soak"
    server = start_quorum(config, address)
    tally, breaker = Tally(), Breaker()
    stop = asyncio.Event()
    control = faulty.removesuffix("/v1") + "/_control"
    rss: dict[str, float] = {}
    phases_run: list[str] = []
    started = time.monotonic()
    try:
        await wait_serving(address)
        watcher = asyncio.create_task(watch_breaker(address, breaker, stop))
        options = [("grpc.use_local_subchannel_pool", 1)]
        channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(4)]
        stubs = itertools.cycle([svc_grpc.RouteServiceStub(c) for c in channels])
        counter = itertools.count()
        total = args.requests
        warmup = min(total // 5, 20_000)
        phase_every = max(200, (total - warmup) // (len(PHASES) * args.cycles))
        async with aiohttp.ClientSession() as http:

            async def script(behaviour: str, count: int) -> None:
                await http.post(f"{control}/reset")
                if behaviour:
                    await http.post(
                        f"{control}/script", json={"behaviour": behaviour, "count": count}
                    )

            async def worker() -> None:
                while (i := next(counter)) < total:
                    await one(next(stubs), i, tally)

            async def conductor() -> None:
                phase_at = warmup
                index = 0
                while tally.done < total:
                    if "warm" not in rss and tally.done >= warmup:
                        rss["warm"] = rss_mb(server.pid)
                    if tally.done >= phase_at:
                        name, behaviour, count = PHASES[index % len(PHASES)]
                        await script(behaviour, count)
                        phases_run.append(name)
                        index += 1
                        phase_at += phase_every
                    await asyncio.sleep(0.05)
                await script("", 0)

            workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
            await asyncio.gather(conductor(), *workers)
            rss.setdefault("warm", rss_mb(server.pid))
            # Quiet now: give the breaker its reset timeout and a probe to close.
            await asyncio.sleep(3.0)
            for i in range(20):
                await one(next(stubs), i * 4 + 1, tally)
            await asyncio.sleep(1.0)
        rss["end"] = rss_mb(server.pid)
        stop.set()
        await watcher
        for channel in channels:
            await channel.close(None)
    finally:
        server.terminate()
        steady_proc.terminate()
        faulty_proc.terminate()
        server.wait(30)
        steady_proc.wait(10)
        faulty_proc.wait(10)
    elapsed = time.monotonic() - started
    by_status = Counter[str]()
    for (_, status), n in tally.by_kind.items():
        by_status[status] += n
    return {
        "requests": tally.done,
        "elapsed_s": round(elapsed, 1),
        "rps": round(tally.done / elapsed, 1),
        "by_status": dict(by_status.most_common()),
        "by_kind": {f"{k} → {s}": n for (k, s), n in sorted(tally.by_kind.items())},
        "unexpected": {f"{k} → {s}": n for (k, s), n in tally.unexpected.items()},
        "unexpected_examples": {
            k: v
            for k, v in tally.examples.items()
            if any(
                k.endswith(s)
                for s in (
                    "INTERNAL",
                    "UNKNOWN",
                    "UNAVAILABLE",
                    "RESOURCE_EXHAUSTED",
                    "FAILED_PRECONDITION",
                )
            )
        },
        "lost": tally.lost,
        "phases": phases_run,
        "breaker": {
            "samples": dict(breaker.states),
            "times_opened": breaker.opened,
            "final": breaker.last,
            "timeline": breaker.timeline[:40],
        },
        "rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "rss_growth_mb": round(rss["end"] - rss["warm"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=4_000, help="200000 for the full soak")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cycles", type=int, default=2, help="times through the fault phases")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    print(f"{result['requests']:,} requests in {result['elapsed_s']} s ({result['rps']} rps)")
    print("by status:", ", ".join(f"{s} {n:,}" for s, n in result["by_status"].items()))
    print("by kind and status:")
    for key, n in result["by_kind"].items():
        print(f"  {key:55} {n:>8,}")
    b = result["breaker"]
    print(
        f"breaker 'faulty': opened {b['times_opened']} times, final state {b['final']}; "
        f"samples {b['samples']}"
    )
    print(f"phases: {' → '.join(result['phases'])}")
    print(
        f"RSS {result['rss_mb']['warm']} MB after warm-up → {result['rss_mb']['end']} MB "
        f"at the end (growth {result['rss_growth_mb']} MB)"
    )
    checks = [
        ("nothing lost", result["lost"] == 0, f"{result['lost']} lost"),
        (
            "every request ended with an answer or the right status",
            not result["unexpected"],
            json.dumps(result["unexpected"]) if result["unexpected"] else "all fit",
        ),
        (
            "no INTERNAL or UNKNOWN",
            not any(s in result["by_status"] for s in ("INTERNAL", "UNKNOWN")),
            "",
        ),
        ("the breaker opened", b["times_opened"] > 0, f"{b['times_opened']} times"),
        ("the breaker recovered", b["final"] == "closed", f"final {b['final']}"),
        (
            "RSS growth after warm-up <= 10 MB",
            result["rss_growth_mb"] <= 10,
            f"{result['rss_growth_mb']} MB",
        ),
    ]
    for text, ok, detail in checks:
        print(f"[{'PASS' if ok else 'FAIL'}] {text}{': ' + detail if detail else ''}")
    if result["unexpected_examples"]:
        print("examples:", json.dumps(result["unexpected_examples"], indent=2))


if __name__ == "__main__":
    main()
