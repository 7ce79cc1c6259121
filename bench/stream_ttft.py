"""Streaming time-to-first-token that Quorum adds, against streaming from the upstream directly.

    .venv/bin/python -m bench.stream_ttft [--requests 400] [--latency-ms 5] [--redis]

A fake OpenAI-compatible upstream runs in its own process and answers a streamed
chat completion after a fixed delay, one word per chunk. The same request is streamed
(a) straight from it over HTTP — TTFT is the first content delta — and (b) through a
``quorum serve`` process with RouteStream — TTFT is the first ``chunk`` event (the
``plan`` and ``attempt_started`` events come before it), and (c) through the bare
forwarder (:mod:`bench.bare_forwarder`: a ``grpc.aio`` server that relays each delta as a
chunk and does nothing else), the floor for any Python gRPC streaming gateway. Requests
alternate between the paths, one at a time, so all see the same machine. Prints
p50/p90/p99 TTFT of each path and what each adds; the target is at most 2 ms added at p50.

With ``--redis`` (needs ``redis-server``) a third path runs through a Quorum whose
breakers are shared through Redis, to show that shared state stays off the hot path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench._harness import (
    free_port,
    start_fake_upstream,
    start_floor,
    start_quorum,
    wait_serving,
)
from quorum.client import AsyncQuorumClient, build_request

PROMPT = "Tell me something nice."
TARGET_ADDED_P50_MS = 2.0


def config_for(base_url: str, redis_url: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "server": {"log_level": "warning"},
        "providers": {
            "upstream": {
                "kind": "openai",
                "base_url": base_url,
                "headers": {"Authorization": "Bearer sk-bench"},
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
        "decisions": {"sink": "none"},
    }
    if redis_url:
        data["state"] = {"redis_url": redis_url}
    return data


def pct(values: list[float], p: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, max(0, round(p / 100 * (len(data) - 1))))]


async def direct_ttft(http: aiohttp.ClientSession, base_url: str) -> float:
    body = {
        "model": "ok",
        "stream": True,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    t0 = time.perf_counter()
    first = 0.0
    async with http.post(
        f"{base_url}/chat/completions",
        json=body,
        headers={"Authorization": "Bearer sk-bench"},
    ) as resp:
        resp.raise_for_status()
        buffer = b""
        async for piece in resp.content.iter_any():
            if not first:
                buffer += piece
                for line in buffer.split(b"\n"):
                    if line.startswith(b"data: {") and b'"content":"' in line:
                        delta = json.loads(line[6:])["choices"][0]["delta"]
                        if delta.get("content"):
                            first = time.perf_counter()
                            break
    return (first - t0) * 1000.0


async def quorum_ttft(client: AsyncQuorumClient) -> float:
    request = build_request(PROMPT)
    t0 = time.perf_counter()
    first = 0.0
    async for event in client.route_stream(request):
        if not first and event.WhichOneof("event") == "chunk":
            first = time.perf_counter()
    return (first - t0) * 1000.0


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--redis needs redis-server (scripts/ensure_redis.sh installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    return proc, f"redis://127.0.0.1:{port}/0"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--redis", action="store_true", help="also run with Redis-shared state")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    upstream, base_url = start_fake_upstream("openai", args.latency_ms)
    tmp = Path(tempfile.mkdtemp())
    procs: list[subprocess.Popen[Any]] = [upstream]
    paths: dict[str, str] = {}
    redis_url = None
    if args.redis:
        redis_proc, redis_url = start_redis()
        procs.append(redis_proc)
    bare_address = f"127.0.0.1:{free_port()}"
    procs.append(start_floor(base_url, bare_address))
    paths["bare"] = bare_address
    for name, url in (("quorum", None), ("quorum+redis", redis_url)):
        if name == "quorum+redis" and not url:
            continue
        config = tmp / f"{name}.yaml"
        config.write_text(yaml.safe_dump(config_for(base_url, url)))
        address = f"127.0.0.1:{free_port()}"
        procs.append(start_quorum(config, address))
        paths[name] = address
    results: dict[str, list[float]] = {"direct": [], **{name: [] for name in paths}}
    try:
        await asyncio.gather(*(wait_serving(a) for n, a in paths.items() if n != "bare"))
        clients = {name: AsyncQuorumClient(a, timeout=30) for name, a in paths.items()}
        async with aiohttp.ClientSession() as http:
            runners: dict[str, Callable[[], Awaitable[float]]] = {
                "direct": lambda: direct_ttft(http, base_url)
            }
            for name, client in clients.items():
                runners[name] = lambda c=client: quorum_ttft(c)  # type: ignore[misc]
            for _ in range(100):  # warm up every path
                for run in runners.values():
                    await run()
            for _ in range(args.requests):
                for name, run in runners.items():
                    results[name].append(await run())
        for client in clients.values():
            await client.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)
        shutil.rmtree(tmp, ignore_errors=True)

    summary = {
        name: {
            "p50_ms": statistics.median(values),
            "p90_ms": pct(values, 90),
            "p99_ms": pct(values, 99),
        }
        for name, values in results.items()
    }
    base = summary["direct"]
    for name in paths:  # (the bare forwarder's is the floor)
        summary[name]["added_p50_ms"] = summary[name]["p50_ms"] - base["p50_ms"]
        summary[name]["added_p90_ms"] = summary[name]["p90_ms"] - base["p90_ms"]
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        f"streaming TTFT, {args.requests} requests per path, one at a time; upstream "
        f"first-chunk delay {args.latency_ms:g} ms; {os.cpu_count()} CPUs"
    )
    print(f"{'path':14} {'p50':>8} {'p90':>8} {'p99':>8} {'added p50':>10} {'added p90':>10}")
    for name, row in summary.items():
        added50 = f"{row['added_p50_ms']:+9.2f}" if "added_p50_ms" in row else f"{'':>9}"
        added90 = f"{row['added_p90_ms']:+9.2f}" if "added_p90_ms" in row else f"{'':>9}"
        print(
            f"{name:14} {row['p50_ms']:7.2f}ms {row['p90_ms']:7.2f}ms {row['p99_ms']:7.2f}ms "
            f"{added50}ms {added90}ms"
        )
    added = summary["quorum"]["added_p50_ms"]
    floor = summary["bare"]["added_p50_ms"]
    verdict = "within" if added <= TARGET_ADDED_P50_MS else "ABOVE"
    print(f"Quorum adds {added:.2f} ms at p50: {verdict} the {TARGET_ADDED_P50_MS:g} ms target")
    print(
        f"the bare forwarder adds {floor:.2f} ms: Quorum's routing costs {added - floor:.2f} ms "
        f"more ({added / floor:.2f}x the floor)"
    )


if __name__ == "__main__":
    asyncio.run(main())
