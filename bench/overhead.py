"""Quorum's added latency and throughput against calling the upstream directly.

    .venv/bin/python -m bench.overhead [--latency-ms 5] [--requests 2000]

A fake OpenAI-compatible upstream answers after a fixed delay (its own process). The
same requests go (a) straight to it over HTTP and (b) through a ``quorum serve`` process
(single strategy, rules classifier) over gRPC, at concurrency 1 and 64. Prints p50/p99
latency of each path, the added latency, throughput, and the server's RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path

import aiohttp
import yaml

from bench._harness import (
    cpu_seconds,
    drive,
    free_port,
    rss_mb,
    start_fake_upstream,
    start_quorum,
    wait_serving,
)
from quorum.client import AsyncQuorumClient, build_request

PROMPT = "What are your opening hours?"


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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=2000)
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
    os.environ["BENCH_UPSTREAM_KEY"] = "sk-bench"
    server = start_quorum(config, address)
    results: dict[str, dict[str, float]] = {}
    try:
        await wait_serving(address)
        body = {"model": "ok", "messages": [{"role": "user", "content": PROMPT}]}
        request = build_request(PROMPT)
        connector = aiohttp.TCPConnector(limit=256)
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            AsyncQuorumClient(address, timeout=30) as client,
        ):

            async def direct() -> None:
                async with http.post(
                    f"{base_url}/chat/completions",
                    json=body,
                    headers={"Authorization": "Bearer sk-bench"},
                ) as resp:
                    resp.raise_for_status()
                    await resp.read()

            async def routed() -> None:
                await client.route(request)

            for _ in range(200):  # warm up both paths
                await direct()
                await routed()
            for concurrency in (1, 64):
                n = args.requests if concurrency > 1 else max(500, args.requests // 4)
                d = await drive(direct, n, concurrency)
                cpu0 = cpu_seconds(server.pid)
                q = await drive(routed, n, concurrency)
                cpu = cpu_seconds(server.pid) - cpu0
                results[f"c{concurrency}"] = {
                    "direct_p50_ms": d.p50,
                    "direct_p99_ms": d.pct(99),
                    "quorum_p50_ms": q.p50,
                    "quorum_p99_ms": q.pct(99),
                    "added_p50_ms": q.p50 - d.p50,
                    "added_p99_ms": q.pct(99) - d.pct(99),
                    "direct_rps": d.rps,
                    "quorum_rps": q.rps,
                    "server_cpu_ms_per_request": cpu / max(1, len(q.latencies_ms)) * 1000,
                    "errors": float(d.errors + q.errors),
                }
        results["server"] = {"rss_mb": rss_mb(server.pid)}
    finally:
        server.terminate()
        upstream.terminate()
        server.wait(30)
        upstream.wait(10)

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"upstream latency {args.latency_ms} ms; {args.requests} requests at C=64")
    print(
        f"{'':6} {'direct p50/p99':>16} {'quorum p50/p99':>16} {'added p50/p99':>16} "
        f"{'direct rps':>11} {'quorum rps':>11} {'cpu/req':>9}"
    )
    for key in ("c1", "c64"):
        r = results[key]
        print(
            f"{key.upper():6} {r['direct_p50_ms']:7.2f}/{r['direct_p99_ms']:<7.2f} ms "
            f"{r['quorum_p50_ms']:7.2f}/{r['quorum_p99_ms']:<7.2f} ms "
            f"{r['added_p50_ms']:7.2f}/{r['added_p99_ms']:<7.2f} ms "
            f"{r['direct_rps']:11.0f} {r['quorum_rps']:11.0f} "
            f"{r['server_cpu_ms_per_request']:7.2f}ms"
        )
    print(f"server RSS after the runs: {results['server']['rss_mb']:.1f} MB")


if __name__ == "__main__":
    asyncio.run(main())
