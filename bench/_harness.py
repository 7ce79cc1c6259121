"""Shared benchmark plumbing: processes on loopback, latency statistics, RSS."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
QUORUM = str(Path(sys.executable).with_name("quorum"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_fake_upstream(
    vendor: str = "openai", latency_ms: float = 0.0
) -> tuple[subprocess.Popen[str], str]:
    """Start a fake vendor API in its own process; returns it and its base URL."""
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            f"tests.fakes.{vendor}_server",
            "--port",
            "0",
            "--latency-ms",
            str(latency_ms),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError(f"fake upstream did not start: {url!r}")
    return proc, url


def start_quorum(config_path: Path, address: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [QUORUM, "serve", "--config", str(config_path), "--address", address, *extra],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def start_ready(argv: list[str], *, cwd: Path = ROOT) -> subprocess.Popen[str]:
    """Start a helper that prints ``ready`` on stdout once it listens."""
    proc = subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise RuntimeError(f"{argv[1]} did not start: {line!r}")
    return proc


def start_floor(upstream: str, address: str) -> subprocess.Popen[str]:
    """The bare forwarder (:mod:`bench.bare_forwarder`, the floor) on ``address``, posting
    to the OpenAI-compatible ``upstream``; returns once it listens."""
    return start_ready(
        [PYTHON, "-m", "bench.bare_forwarder", "--upstream", upstream, "--address", address]
    )


async def wait_serving(address: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} never became SERVING")
            await asyncio.sleep(0.05)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass(frozen=True)
class Run:
    latencies_ms: list[float]
    elapsed_s: float
    errors: int

    def pct(self, p: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return float("nan")
        k = min(len(data) - 1, max(0, round(p / 100 * (len(data) - 1))))
        return data[k]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0


async def drive(
    call: Callable[[], Awaitable[object]],
    total: int,
    concurrency: int,
    *,
    duration_s: float | None = None,
) -> Run:
    """Run ``total`` calls with ``concurrency`` workers; record each latency.

    With ``duration_s`` the run also stops starting calls once that much time has
    passed, so a slow path gets fewer calls rather than a longer run.
    """
    latencies: list[float] = []
    errors = 0
    remaining = total
    stop_at = time.perf_counter() + duration_s if duration_s is not None else float("inf")

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0 and time.perf_counter() < stop_at:
            remaining -= 1
            t0 = time.perf_counter()
            try:
                await call()
            except Exception:
                errors += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(latencies, time.perf_counter() - start, errors)
