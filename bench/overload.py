"""Overload: offered twice what the server can do, does it shed or queue?

    .venv/bin/python -m bench.overload [--seconds 8] [--max-inflight 64]

1. Capacity: a closed loop at concurrency 64 (over four connections) measures the
   requests/s one server sustains (fake upstream answering at once, single strategy),
   on the server that sheds nothing.
2. An open loop — requests started at a fixed rate whatever happens to earlier ones,
   as independent callers would — offers half the capacity, then twice the capacity,
   to three servers:

   * **default**: the server as configured by default: ``admission.max_inflight`` 64 and
     shedding on queueing delay (:mod:`quorum.server.service.shedding`);
   * **in-flight limit only**: the same with ``admission.max_queue_delay_ms: null``;
   * **+ gRPC core pending limits**: in-flight limit only, with gRPC core's own bounds
     on RPCs that arrived but that the server has not taken yet (:data:`CORE_LIMITS`,
     set through :mod:`bench._serve_options`).

What it shows: when the CPU is the limit, ``grpc.aio`` takes new RPCs from gRPC core
only between turns of the event loop, so the backlog grows in gRPC core, before any
Python code runs and before an in-flight limit can count it; shedding on the event
loop's busy share refuses calls instead. Each call has a 2 s deadline; accepted
p50/p99, shed share, status codes and whether shed calls carry RetryInfo are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from google.rpc import error_details_pb2, status_pb2

from bench._harness import (
    PYTHON,
    ROOT,
    Run,
    drive,
    free_port,
    start_fake_upstream,
    start_quorum,
    wait_serving,
)
from bench.peers import KEY_ENV, PROMPT
from quorum.route.v1 import route_service_pb2_grpc as svc_grpc
from quorum.route.v1 import types_pb2 as pb

DEADLINE_S = 2.0
# gRPC core's limits on RPCs that arrived but that the server has not taken yet.
CORE_LIMITS = [
    ("grpc.server.max_pending_requests", 32),
    ("grpc.server.max_pending_requests_hard_limit", 64),
    ("grpc.server_max_unrequested_time_in_server", 1),
]


def config_for(base_url: str, max_inflight: int, *, cpu_shedding: bool = True) -> dict[str, Any]:
    admission: dict[str, Any] = {"max_inflight": max_inflight, "retry_after_s": 0.5}
    if not cpu_shedding:
        admission["max_queue_delay_ms"] = None
    return {
        "server": {"log_level": "warning", "max_concurrent_rpcs": max(max_inflight, 64)},
        "admission": admission,
        "providers": {
            "upstream": {
                "kind": "openai",
                "base_url": base_url,
                "api_key_env": KEY_ENV,
                "max_connections": 512,
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


@dataclass
class OpenLoop:
    """Outcomes of one open-loop run."""

    offered_rps: float
    seconds: float
    latencies_ok: list[float] = field(default_factory=list)
    latencies_shed: list[float] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)
    retry_info: int = 0

    def summary(self) -> dict[str, Any]:
        ok = Run(self.latencies_ok, self.seconds, 0)
        shed = Run(self.latencies_shed, self.seconds, 0)
        total = sum(self.codes.values())
        return {
            "offered_rps": round(self.offered_rps),
            "sent": total,
            "codes": dict(self.codes),
            "goodput_rps": round(len(self.latencies_ok) / self.seconds),
            "shed_share": round(self.codes["RESOURCE_EXHAUSTED"] / total, 3) if total else 0.0,
            "shed_with_retry_info": self.retry_info,
            "accepted_p50_ms": round(ok.p50, 2),
            "accepted_p99_ms": round(ok.pct(99), 2),
            "accepted_max_ms": round(max(self.latencies_ok, default=float("nan")), 2),
            "shed_p99_ms": round(shed.pct(99), 2),
        }


class RoundRobin:
    """Spreads calls over several connections (one would cap the offered load)."""

    def __init__(self, stubs: list[Any]) -> None:
        self._stubs = itertools.cycle(stubs)

    def Route(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 - the stub's name
        return next(self._stubs).Route(*args, **kwargs)


def has_retry_info(exc: grpc.aio.AioRpcError) -> bool:
    trailing: Any = exc.trailing_metadata() or ()
    for key, value in trailing:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            return any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
    return False


async def open_loop(stub: Any, rate: float, seconds: float) -> OpenLoop:
    """Start ``rate`` calls a second for ``seconds``, each on its own task."""
    result = OpenLoop(rate, seconds)
    request = pb.RouteRequest(messages=[pb.Message(role=pb.ROLE_USER, content=PROMPT)])
    tasks: set[asyncio.Task[None]] = set()

    async def one() -> None:
        t0 = time.perf_counter()
        try:
            await stub.Route(request, timeout=DEADLINE_S)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            result.codes[code] += 1
            if code == "RESOURCE_EXHAUSTED":
                result.latencies_shed.append((time.perf_counter() - t0) * 1000)
                result.retry_info += has_retry_info(exc)
            return
        result.codes["OK"] += 1
        result.latencies_ok.append((time.perf_counter() - t0) * 1000)

    start = time.perf_counter()
    sent = 0
    while (now := time.perf_counter() - start) < seconds:
        due = int(now * rate) + 1
        while sent < due:
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(0.002)
    if tasks:
        await asyncio.wait(tasks, timeout=DEADLINE_S + 5)
    return result


def start_server(
    config: Path, address: str, grpc_options: list[tuple[str, int]] | None
) -> subprocess.Popen[bytes]:
    if not grpc_options:
        return start_quorum(config, address)
    argv = [PYTHON, "-m", "bench._serve_options", "serve", "--config", str(config)]
    return subprocess.Popen(
        [*argv, "--address", address],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "QUORUM_BENCH_GRPC_OPTIONS": json.dumps(grpc_options)},
    )


async def scenario(
    base_url: str,
    tmp: Path,
    max_inflight: int,
    args: argparse.Namespace,
    rate: float | None,
    *,
    cpu_shedding: bool = True,
    grpc_options: list[tuple[str, int]] | None = None,
) -> dict[str, Any]:
    config = tmp / f"overload-{max_inflight}-{cpu_shedding}-{bool(grpc_options)}.yaml"
    config.write_text(yaml.safe_dump(config_for(base_url, max_inflight, cpu_shedding=cpu_shedding)))
    address = f"127.0.0.1:{free_port()}"
    server = start_server(config, address, grpc_options)
    out: dict[str, Any] = {
        "max_inflight": max_inflight,
        "cpu_shedding": cpu_shedding,
        "grpc_options": grpc_options or [],
    }
    try:
        await wait_serving(address, 60.0)  # a busy machine starts servers slowly
        options = [("grpc.use_local_subchannel_pool", 1)]
        channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(4)]
        try:
            stub = RoundRobin([svc_grpc.RouteServiceStub(c) for c in channels])
            request = pb.RouteRequest(messages=[pb.Message(role=pb.ROLE_USER, content=PROMPT)])

            async def call() -> None:
                await stub.Route(request, timeout=DEADLINE_S)

            await drive(call, 500, 8)
            if rate is None:
                closed = await drive(call, 1_000_000, 64, duration_s=args.seconds)
                rate = closed.rps
                out["capacity_rps"] = round(rate)
                out["capacity_p99_ms"] = round(closed.pct(99), 2)
            out["half"] = (await open_loop(stub, rate / 2, args.seconds)).summary()
            await asyncio.sleep(1.0)
            out["double"] = (await open_loop(stub, rate * 2, args.seconds)).summary()
        finally:
            for channel in channels:
                await channel.close(None)
    finally:
        server.terminate()
        server.wait(30)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    upstream, base_url = start_fake_upstream("openai")
    tmp = Path(tempfile.mkdtemp(prefix="quorum-overload-"))
    os.environ[KEY_ENV] = "sk-bench"
    try:
        # Capacity is measured where nothing is shed: a shed call is not served work.
        inflight = await scenario(base_url, tmp, args.max_inflight, args, None, cpu_shedding=False)
        rate = float(inflight["capacity_rps"])
        default = await scenario(base_url, tmp, args.max_inflight, args, rate)
        try:  # a comparison only: its failure must not cost the figures above
            core = await scenario(
                base_url,
                tmp,
                args.max_inflight,
                args,
                rate,
                cpu_shedding=False,
                grpc_options=CORE_LIMITS,
            )
        except Exception as exc:  # reported, not raised
            core = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        upstream.terminate()
        upstream.wait(10)
    return {"default": default, "inflight_only": inflight, "core_limits": core}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--max-inflight", type=int, default=64)
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
    a, i, c = result["default"], result["inflight_only"], result["core_limits"]
    print(
        f"capacity (closed loop, C=64, nothing shed): {i['capacity_rps']:,} rps, "
        f"p99 {i['capacity_p99_ms']} ms"
    )
    header = (
        f"{'':40} {'offered':>8} {'goodput':>8} {'shed':>6} {'p50 ok':>8} {'p99 ok':>8} "
        f"{'max ok':>8}  codes"
    )
    print(header)
    rows = [
        ("default (queue-delay shedding), 0.5x", a["half"]),
        ("default (queue-delay shedding), 2x", a["double"]),
        (f"in-flight limit ({i['max_inflight']}) only, 0.5x", i["half"]),
        (f"in-flight limit ({i['max_inflight']}) only, 2x", i["double"]),
    ]
    if "error" in c:
        print(f"+ gRPC core pending limits: not measured ({c['error']})")
    else:
        rows += [
            ("+ gRPC core pending limits, 0.5x", c["half"]),
            ("+ gRPC core pending limits, 2x", c["double"]),
        ]
    for label, block in rows:
        print(
            f"{label:40} {block['offered_rps']:>8,} {block['goodput_rps']:>8,} "
            f"{block['shed_share']:>6.0%} {block['accepted_p50_ms']:>8.1f} "
            f"{block['accepted_p99_ms']:>8.1f} {block['accepted_max_ms']:>8.1f}  {block['codes']}"
        )
    for name, block in (("default", a["double"]),):
        shed = block["codes"].get("RESOURCE_EXHAUSTED", 0)
        checks = [
            (f"{name}: sheds with RESOURCE_EXHAUSTED at 2x", shed > 0, f"{shed:,} shed"),
            (
                f"{name}: every shed call carries RetryInfo",
                block["shed_with_retry_info"] == shed,
                f"{block['shed_with_retry_info']:,}/{shed:,}",
            ),
            (
                f"{name}: accepted p99 bounded (< 1 s, inside the 2 s deadline)",
                block["accepted_p99_ms"] < 1000,
                f"{block['accepted_p99_ms']} ms",
            ),
            (
                f"{name}: no INTERNAL/UNKNOWN",
                not any(k in block["codes"] for k in ("INTERNAL", "UNKNOWN")),
                json.dumps(block["codes"]),
            ),
        ]
        half = a["half"]
        checks.append(
            (
                "default: at 0.5x almost nothing is shed (<= 2%)",
                half["shed_share"] <= 0.02,
                f"{half['shed_share']:.1%}",
            )
        )
        for text, ok, detail in checks:
            print(f"[{'PASS' if ok else 'FAIL'}] {text}: {detail}")


if __name__ == "__main__":
    main()
