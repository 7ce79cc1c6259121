"""Quorum's added latency and throughput against calling the upstream directly, with
the least a Python gRPC gateway adds (the floor) measured alongside.

    .venv/bin/python -m bench.overhead [--latency-ms 5] [--requests 2000] [--rounds 3]

A fake OpenAI-compatible upstream answers after a fixed delay (its own process). The
same requests go (a) straight to it over HTTP, (b) through the bare forwarder
(``bench/bare_forwarder.py``: a ``grpc.aio`` handler that posts with aiohttp and does
nothing else) and (c) through a ``quorum serve`` process (single strategy, rules
classifier), at concurrency 1 and 64. The three paths take turns for ``--rounds``
rounds, so drift from other load on the machine hits each alike. Prints p50/p99
latency of each path, the latency each gateway adds, throughput, the server's CPU per
request and its RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import yaml

from bench._harness import (
    Run,
    cpu_seconds,
    drive,
    free_port,
    rss_mb,
    start_fake_upstream,
    start_floor,
    start_quorum,
    wait_serving,
)
from quorum.client import AsyncQuorumClient, build_request

PROMPT = "What are your opening hours?"
PATHS = ("direct", "floor", "quorum")


def config_for(base_url: str) -> dict[str, object]:
    return {
        "server": {"log_level": "warning", "max_concurrent_rpcs": 4096},
        "providers": {
            "upstream": {
                "kind": "openai",
                "base_url": base_url,
                "api_key_env": "BENCH_UPSTREAM_KEY",
                "max_connections": 256,
            }
        },
        "tiers": ["cheap"],
        "models": {
            "ok": {
                "provider": "upstream",
                "tier": "cheap",
                "input_usd_per_mtok": 0.1,
                "output_usd_per_mtok": 0.4,
            }
        },
        "routing": {"default_strategy": "single"},
    }


def merge(runs: list[Run]) -> Run:
    """The rounds of one path as one run."""
    return Run(
        [ms for run in runs for ms in run.latencies_ms],
        sum(run.elapsed_s for run in runs),
        sum(run.errors for run in runs),
    )


async def measure(
    calls: dict[str, Callable[[], Awaitable[object]]],
    pids: dict[str, int],
    n: int,
    concurrency: int,
    rounds: int,
) -> dict[str, float]:
    runs: dict[str, list[Run]] = {name: [] for name in calls}
    cpu: dict[str, float] = dict.fromkeys(pids, 0.0)
    for _ in range(rounds):
        for name, call in calls.items():
            before = cpu_seconds(pids[name]) if name in pids else 0.0
            runs[name].append(await drive(call, n, concurrency))
            if name in pids:
                cpu[name] += cpu_seconds(pids[name]) - before
    merged = {name: merge(r) for name, r in runs.items()}
    d = merged["direct"]
    out: dict[str, float] = {"errors": float(sum(r.errors for r in merged.values()))}
    for name, run in merged.items():
        out[f"{name}_p50_ms"] = run.p50
        out[f"{name}_p99_ms"] = run.pct(99)
        out[f"{name}_rps"] = run.rps
        if name != "direct":
            out[f"{name}_added_p50_ms"] = run.p50 - d.p50
            out[f"{name}_added_p99_ms"] = run.pct(99) - d.pct(99)
            done = max(1, len(run.latencies_ms))
            out[f"{name}_cpu_ms_per_request"] = cpu[name] / done * 1000
    # The names earlier versions printed, kept for scripts that read --json.
    out["added_p50_ms"] = out["quorum_added_p50_ms"]
    out["added_p99_ms"] = out["quorum_added_p99_ms"]
    out["server_cpu_ms_per_request"] = out["quorum_cpu_ms_per_request"]
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    upstream, base_url = start_fake_upstream("openai", args.latency_ms)
    tmp = Path(tempfile.mkdtemp())
    config = tmp / "bench.yaml"
    config.write_text(yaml.safe_dump(config_for(base_url)))
    address = f"127.0.0.1:{free_port()}"
    floor_address = f"127.0.0.1:{free_port()}"
    os.environ["BENCH_UPSTREAM_KEY"] = "sk-bench"
    server = start_quorum(config, address)
    floor = start_floor(base_url, floor_address)
    results: dict[str, dict[str, float]] = {}
    try:
        await wait_serving(address)
        body = {"model": "ok", "messages": [{"role": "user", "content": PROMPT}]}
        request = build_request(PROMPT)
        connector = aiohttp.TCPConnector(limit=256)
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            AsyncQuorumClient(address, timeout=30) as client,
            AsyncQuorumClient(floor_address, timeout=30) as floor_client,
        ):

            async def direct() -> None:
                async with http.post(
                    f"{base_url}/chat/completions",
                    json=body,
                    headers={"Authorization": "Bearer sk-bench"},
                ) as resp:
                    resp.raise_for_status()
                    await resp.read()

            async def floored() -> None:
                await floor_client.route(request)

            async def routed() -> None:
                await client.route(request)

            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "direct": direct,
                "floor": floored,
                "quorum": routed,
            }
            for _ in range(200):  # warm up every path
                for call in calls.values():
                    await call()
            pids = {"floor": floor.pid, "quorum": server.pid}
            for concurrency in (1, 64):
                n = args.requests if concurrency > 1 else max(500, args.requests // 4)
                per_round = max(1, n // args.rounds)
                results[f"c{concurrency}"] = await measure(
                    calls, pids, per_round, concurrency, args.rounds
                )
        results["server"] = {"rss_mb": rss_mb(server.pid)}
    finally:
        for proc in (server, floor, upstream):
            proc.terminate()
        for proc in (server, floor, upstream):
            proc.wait(30)

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"upstream latency {args.latency_ms} ms; {args.rounds} interleaved rounds; "
        f"{args.requests} requests per path at C=64"
    )
    print(f"{'':4} {'path':7} {'p50/p99':>16} {'added p50/p99':>16} {'rps':>7} {'cpu/req':>9}")
    for key in ("c1", "c64"):
        r = results[key]
        for name in PATHS:
            added = (
                f"{r[f'{name}_added_p50_ms']:7.2f}/{r[f'{name}_added_p99_ms']:<7.2f} ms"
                if name != "direct"
                else f"{'-':>16}"
            )
            cpu = f"{r[f'{name}_cpu_ms_per_request']:7.2f}ms" if name != "direct" else ""
            print(
                f"{key.upper():4} {name:7} "
                f"{r[f'{name}_p50_ms']:7.2f}/{r[f'{name}_p99_ms']:<7.2f} ms {added} "
                f"{r[f'{name}_rps']:7.0f} {cpu:>9}"
            )
    print(f"server RSS after the runs: {results['server']['rss_mb']:.1f} MB")


if __name__ == "__main__":
    asyncio.run(main())
