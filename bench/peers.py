"""Quorum side by side with the floor and with a peer, in one run.

    .venv/bin/python -m bench.peers [--quick] [--rounds N] [--no-litellm] [--no-workers]

Every process is its own: the fake OpenAI upstream (answers at once; a model named
``slow-20`` answers after 20 ms), the client (this process), and the gateways:

* **direct** — the client calls the upstream over HTTP (no gateway);
* **bare** — :mod:`bench.bare_forwarder`, a minimal ``grpc.aio`` forwarder: the floor;
* **quorum** — ``quorum serve``, single strategy, rules classifier;
* **quorum x2** — ``quorum serve --workers 2`` (one port, SO_REUSEPORT);
* **litellm** — LiteLLM's Router behind a minimal aiohttp server
  (:mod:`bench.litellm_server`), installed into ``bench/.venv-litellm`` at a pinned
  version with the local cost map and telemetry off.

The scenarios run in interleaved rounds (every path once per round, then the next
round), so drift from other load on the machine hits every path alike. Printed: p50/p99
at concurrency 1, throughput at 32, the gateway's CPU time per request (from /proc),
RSS, and the ratios the targets are stated in. Also: consensus of three models (5, 10
and 20 ms) against one call to the slowest, and the server's RSS after 100k requests.
Writes ``docs/performance.png`` and ``bench/out/peers.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import yaml

from bench._harness import (
    PYTHON,
    QUORUM,
    ROOT,
    Run,
    drive,
    free_port,
    start_fake_upstream,
    start_floor,
    start_ready,
    wait_serving,
)
from quorum.route.v1 import route_service_pb2_grpc as svc_grpc
from quorum.route.v1 import types_pb2 as pb

LITELLM_VERSION = "1.110.2"
COMPROMISED_LITELLM = frozenset({"1.107.0"})  # a known-compromised release: never install
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
PROMPT = "What are your opening hours?"
SLOW_MODEL = "slow-20"  # the fake upstream answers this model after 20 ms
VOTERS = {"voter-fast": "slow-5", "voter-mid": "slow-10", "voter-slow": "slow-20"}
SLOWEST_VOTER = "voter-slow"
KEY_ENV = "BENCH_UPSTREAM_KEY"
CHANNELS = 4  # gRPC connections per gateway: spreads load over workers

Call = Callable[[], Awaitable[object]]


# ---- processes ----------------------------------------------------------------------


def litellm_python() -> tuple[Path | None, str]:
    """The LiteLLM venv's interpreter, installing the pinned version if needed."""
    python = LITELLM_VENV / "bin" / "python"
    if LITELLM_VERSION in COMPROMISED_LITELLM:  # pragma: no cover - a guard on edits
        raise SystemExit(f"refusing to install litellm {LITELLM_VERSION}")

    def installed() -> str:
        if not python.exists():
            return ""
        probe = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
            check=False,
        )
        return probe.stdout.strip() if probe.returncode == 0 else ""

    version = installed()
    if version != LITELLM_VERSION:
        print(f"installing litellm=={LITELLM_VERSION} into {LITELLM_VENV} ...", flush=True)
        if not python.exists():
            subprocess.run([PYTHON, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                f"litellm=={LITELLM_VERSION}",
                "aiohttp",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if pip.returncode != 0:
            return None, f"pip failed: {pip.stderr.strip().splitlines()[-1:]}"
        version = installed()
    if version in COMPROMISED_LITELLM or version != LITELLM_VERSION:
        return None, f"litellm {version or 'missing'} installed, want {LITELLM_VERSION}"
    return python, version


def quorum_config(base_url: str, *, consensus: bool = False) -> dict[str, Any]:
    """Single strategy, rules classifier; or three voters (5, 10 and 20 ms) for the
    consensus run."""
    provider = {
        "kind": "openai",
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "max_connections": 512,
    }
    price = {"input_usd_per_mtok": 0.1, "output_usd_per_mtok": 0.4}
    if consensus:
        # Three voters of distinct speeds, so that "the slowest of them" is one model and
        # not whichever of three equal calls the upstream's timer happened to wake last.
        # No early exit: the vote waits for the slowest, as the target compares.
        models = {
            name: {"provider": "upstream", "tier": "cheap", "model_id": model_id, **price}
            for name, model_id in VOTERS.items()
        }
        routing: dict[str, Any] = {
            "default_strategy": "single",
            "consensus": {"models": list(models), "size": 3, "early_exit": False},
        }
    else:
        # slow-20 has a tier of its own: performance routing explores the order of a
        # tier's models on a share of requests, which would send some to it.
        models = {
            "ok": {"provider": "upstream", "tier": "cheap", **price},
            SLOW_MODEL: {
                "provider": "upstream",
                "tier": "slow",
                "input_usd_per_mtok": 0.2,
                "output_usd_per_mtok": 0.8,
            },
        }
        routing = {"default_strategy": "single"}
    return {
        "server": {"log_level": "warning", "max_concurrent_rpcs": 4096},
        "providers": {"upstream": provider},
        "tiers": ["cheap"] if consensus else ["cheap", "slow"],
        "models": models,
        "routing": routing,
    }


@dataclass
class Processes:
    """Everything started, stopped in reverse order."""

    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def add(self, proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_quorum(config: Path, address: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [QUORUM, "serve", "--config", str(config), "--address", address, *extra],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, KEY_ENV: "sk-bench"},
    )


def supports_workers() -> bool:
    helped = subprocess.run(
        [QUORUM, "serve", "--help"], capture_output=True, text=True, check=False
    )
    return "--workers" in helped.stdout


# ---- /proc --------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children = task.read_text().split()
        except OSError:
            continue
        for child in children:
            out.extend(descendants(int(child)))
    return out


def tree_cpu_s(pid: int) -> float:
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for p in descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def tree_rss_mb(pid: int) -> float:
    total = 0.0
    for p in descendants(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


# ---- clients ------------------------------------------------------------------------


class GrpcPath:
    """Round-robin over a few separate connections to one gRPC gateway."""

    def __init__(self, address: str) -> None:
        options = [("grpc.use_local_subchannel_pool", 1)]
        self.channels = [
            grpc.aio.insecure_channel(address, options=options) for _ in range(CHANNELS)
        ]
        self.stubs = itertools.cycle([svc_grpc.RouteServiceStub(c) for c in self.channels])

    def call(self, request: pb.RouteRequest) -> Call:
        async def route() -> None:
            await next(self.stubs).Route(request, timeout=30)

        return route

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close(None)


def http_call(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Call:
    data = json.dumps(body).encode()
    headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}

    async def post() -> None:
        async with http.post(url, data=data, headers=headers) as response:
            response.raise_for_status()
            await response.read()

    return post


def grpc_request(model: str = "", strategy: int = 0) -> pb.RouteRequest:
    hints = pb.RoutingHints(model=model, strategy=strategy)  # type: ignore[arg-type]
    return pb.RouteRequest(
        messages=[pb.Message(role=pb.ROLE_USER, content=PROMPT)],
        hints=hints,
    )


# ---- measuring ----------------------------------------------------------------------


@dataclass
class Tally:
    """Latencies, wall time and gateway CPU of one path in one scenario, over rounds."""

    latencies: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    errors: int = 0

    def add(self, run: Run, cpu_s: float) -> None:
        self.latencies.extend(run.latencies_ms)
        self.elapsed_s += run.elapsed_s
        self.cpu_s += cpu_s
        self.errors += run.errors

    def summary(self) -> dict[str, float]:
        run = Run(self.latencies, self.elapsed_s, self.errors)
        n = max(1, len(self.latencies))
        return {
            "requests": float(len(self.latencies)),
            "p50_ms": run.p50,
            "p99_ms": run.pct(99),
            "rps": run.rps,
            "cpu_ms_per_request": self.cpu_s / n * 1000,
            "errors": float(self.errors),
        }


@dataclass
class Target:
    name: str
    pid: int | None  # the gateway process (None: direct)
    calls: dict[str, Call]  # scenario → call


async def measure(
    paths: list[Target],
    scenarios: dict[str, tuple[int, float]],
    rounds: int,
) -> dict[str, dict[str, dict[str, float]]]:
    """Run every (scenario, path) once per round; ``scenarios`` maps a name to
    (concurrency, seconds per run)."""
    tallies: dict[tuple[str, str], Tally] = {}
    for r in range(rounds):
        for scenario, (concurrency, seconds) in scenarios.items():
            for path in paths:
                call = path.calls.get(scenario)
                if call is None:
                    continue
                cpu0 = tree_cpu_s(path.pid) if path.pid else 0.0
                run = await drive(call, 1_000_000, concurrency, duration_s=seconds)
                cpu = (tree_cpu_s(path.pid) - cpu0) if path.pid else 0.0
                tallies.setdefault((scenario, path.name), Tally()).add(run, cpu)
        print(f"  round {r + 1}/{rounds} done", flush=True)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (scenario, name), tally in tallies.items():
        out.setdefault(scenario, {})[name] = tally.summary()
    return out


# ---- report -------------------------------------------------------------------------


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def report(results: dict[str, Any]) -> tuple[str, list[tuple[str, bool, str]]]:
    """The markdown table and the target checks."""
    c1, c32, slow = results["c1"], results["c32"], results["c1_20ms"]
    direct1 = c1["direct"]
    lines = [
        "| path | C=1 p50 / p99 | added p50 / p99 | C=32 rps | 20 ms upstream p50 / p99 "
        "| gateway CPU / request | RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    order = ["direct", "bare", "quorum", "quorum x2", "litellm"]
    labels = {
        "direct": "direct HTTP call",
        "bare": "bare grpc.aio forwarder (the floor)",
        "quorum": "Quorum, 1 worker",
        "quorum x2": "Quorum, `--workers 2`",
        "litellm": f"LiteLLM {LITELLM_VERSION} Router behind aiohttp",
    }
    for name in order:
        if name not in c32 and name not in c1:
            continue
        a = c1.get(name)
        b = c32.get(name, {})
        s = slow.get(name)
        cells = [labels[name]]
        cells.append(f"{a['p50_ms']:.2f} / {a['p99_ms']:.2f} ms" if a else "–")
        if a and name != "direct":
            cells.append(
                f"{a['p50_ms'] - direct1['p50_ms']:.2f} / {a['p99_ms'] - direct1['p99_ms']:.2f} ms"
            )
        else:
            cells.append("–")
        cells.append(f"{b['rps']:,.0f}" if b else "–")
        cells.append(f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f} ms" if s else "–")
        cpu = b.get("cpu_ms_per_request") if b else None
        cells.append(f"{cpu:.2f} ms" if cpu and name != "direct" else "–")
        rss = results.get("rss_mb", {}).get(name)
        cells.append(f"{rss:.0f} MB" if rss else "–")
        lines.append("| " + " | ".join(cells) + " |")
    checks: list[tuple[str, bool, str]] = []

    def added(name: str, key: str) -> float:
        return float(c1[name][key] - direct1[key])

    q_p50, b_p50 = added("quorum", "p50_ms"), added("bare", "p50_ms")
    checks.append(
        (
            "added p50 at C=1 <= 1.5x the floor's",
            q_p50 <= 1.5 * b_p50,
            f"{q_p50:.2f} vs {b_p50:.2f} ms ({ratio(q_p50, b_p50):.2f}x)",
        )
    )
    if "litellm" in c1:
        l_p50 = added("litellm", "p50_ms")
        checks.append(
            (
                "added p50 at C=1 <= 1/5 of LiteLLM Router's",
                q_p50 <= l_p50 / 5,
                f"{q_p50:.2f} vs {l_p50:.2f} ms (1/{ratio(l_p50, q_p50):.1f})",
            )
        )
    q_p99 = added("quorum", "p99_ms")
    checks.append(("added p99 at C=1 <= 2 ms", q_p99 <= 2.0, f"{q_p99:.2f} ms"))
    q_rps, b_rps = c32["quorum"]["rps"], c32["bare"]["rps"]
    checks.append(
        (
            "C=32 throughput >= 0.75x the floor's",
            q_rps >= 0.75 * b_rps,
            f"{q_rps:,.0f} vs {b_rps:,.0f} rps ({ratio(q_rps, b_rps):.2f}x)",
        )
    )
    if "litellm" in c32:
        l_rps = c32["litellm"]["rps"]
        checks.append(
            (
                "C=32 throughput >= 8x LiteLLM Router's",
                q_rps >= 8 * l_rps,
                f"{q_rps:,.0f} vs {l_rps:,.0f} rps ({ratio(q_rps, l_rps):.1f}x)",
            )
        )
    cpu = c32["quorum"]["cpu_ms_per_request"]
    checks.append(("gateway CPU/request <= 0.6 ms", cpu <= 0.6, f"{cpu:.3f} ms"))
    rss = results.get("rss_after")
    if rss:
        checks.append(
            (
                f"server RSS <= 120 MB after {rss['requests']:,} requests",
                rss["rss_mb"] <= 120,
                f"{rss['rss_mb']:.1f} MB",
            )
        )
    cons = results.get("consensus")
    if cons and "added_p50_ms" in cons:
        checks.append(
            (
                "consensus of 3 adds <= 1 ms over one call to the slowest",
                cons["added_p50_ms"] <= 1.0,
                f"{cons['added_p50_ms']:+.2f} ms p50 (p99 {cons['added_p99_ms']:+.2f}): "
                f"{cons['consensus']['p50_ms']:.2f} vs {cons['single']['p50_ms']:.2f} ms "
                f"({cons['raw_added_p50_ms']:+.2f}), less the upstream's own "
                f"{cons['upstream_p50_ms']:+.2f} ms for serving three at once (measured directly)",
            )
        )
    if "quorum x2" in c32:
        x2 = c32["quorum x2"]["rps"]
        checks.append(
            (
                "--workers 2 serves more than 1 worker at C=32",
                x2 > q_rps,
                f"{x2:,.0f} vs {q_rps:,.0f} rps ({ratio(x2, q_rps):.2f}x)",
            )
        )
    return "\n".join(lines), checks


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c1, c32 = results["c1"], results["c32"]
    names = [n for n in ("direct", "bare", "quorum", "litellm") if n in c1]
    colors = {
        "direct": "#4a5568",
        "bare": "#8c8c8c",
        "quorum": "#2b6cb0",
        "quorum x2": "#63b3ed",
        "litellm": "#dd6b20",
    }
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    ax = axes[0]
    width = 0.38
    xs = range(len(names))
    p50 = [c1[n]["p50_ms"] for n in names]
    p99 = [c1[n]["p99_ms"] for n in names]
    ax.bar([x - width / 2 for x in xs], p50, width, label="p50", color=[colors[n] for n in names])
    ax.bar(
        [x + width / 2 for x in xs],
        p99,
        width,
        label="p99",
        color=[colors[n] for n in names],
        alpha=0.5,
    )
    for x, a, b in zip(xs, p50, p99, strict=True):
        ax.text(x - width / 2, a, f"{a:.2f}", ha="center", va="bottom", fontsize=8)
        ax.text(x + width / 2, b, f"{b:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), names)
    ax.set_yscale("log")
    ax.set_ylabel("ms per request (log)")
    ax.set_title("Latency at C=1 (p50 solid, p99 light)")
    ax = axes[1]
    tnames = [n for n in ("bare", "quorum", "quorum x2", "litellm") if n in c32]
    rps = [c32[n]["rps"] for n in tnames]
    ax.bar(tnames, rps, color=[colors[n] for n in tnames])
    for x, v in enumerate(rps):
        ax.text(x, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("requests / s")
    ax.set_title("Throughput at C=32")
    ax = axes[2]
    cpu = [c32[n]["cpu_ms_per_request"] for n in tnames]
    ax.bar(tnames, cpu, color=[colors[n] for n in tnames])
    for x, v in enumerate(cpu):
        ax.text(x, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("ms CPU per request")
    ax.set_title("Gateway CPU per request (C=32)")
    fig.suptitle(
        "Quorum vs the bare forwarder and LiteLLM Router — one run, same machine, "
        "fake upstream answering at once",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- main ---------------------------------------------------------------------------


async def warm(call: Call, n: int) -> None:
    for _ in range(n):
        await call()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="quorum-peers-"))
    results: dict[str, Any] = {"args": vars(args)}
    grpc_paths: list[GrpcPath] = []
    try:
        upstream, base_url = start_fake_upstream("openai", 0.0)
        procs.add(upstream)
        config = tmp / "quorum.yaml"
        config.write_text(yaml.safe_dump(quorum_config(base_url)))
        q_addr = f"127.0.0.1:{free_port()}"
        quorum = procs.add(start_quorum(config, q_addr))
        b_addr = f"127.0.0.1:{free_port()}"
        bare = procs.add(start_floor(base_url, b_addr))
        x2: subprocess.Popen[bytes] | None = None
        x2_addr = f"127.0.0.1:{free_port()}"
        if not args.no_workers:
            if supports_workers():
                x2 = procs.add(start_quorum(config, x2_addr, "--workers", "2"))
            else:
                print("quorum serve has no --workers: skipping the 2-worker path")
        litellm: subprocess.Popen[str] | None = None
        l_port = free_port()
        if not args.no_litellm:
            python, note = litellm_python()
            if python is None:
                print(f"LiteLLM unavailable ({note}): skipping it")
                results["litellm"] = note
            else:
                results["litellm"] = note
                litellm = procs.add(
                    start_ready(
                        [
                            str(python),
                            str(ROOT / "bench" / "litellm_server.py"),
                            "--upstream",
                            base_url,
                            "--port",
                            str(l_port),
                            "--models",
                            f"ok,{SLOW_MODEL}",
                        ]
                    )
                )
        await wait_serving(q_addr)
        if x2 is not None:
            await wait_serving(x2_addr)

        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector) as http:
            chat = f"{base_url}/chat/completions"
            direct_body = {"model": "ok", "messages": [{"role": "user", "content": PROMPT}]}
            slow_body = {**direct_body, "model": SLOW_MODEL}
            plain, slow = grpc_request(), grpc_request(model=SLOW_MODEL)
            q, b = GrpcPath(q_addr), GrpcPath(b_addr)
            grpc_paths += [q, b]
            paths = [
                Target(
                    "direct",
                    None,
                    {
                        "c1": http_call(http, chat, direct_body),
                        "c32": http_call(http, chat, direct_body),
                        "c1_20ms": http_call(http, chat, slow_body),
                    },
                ),
                Target(
                    "bare",
                    bare.pid,
                    {"c1": b.call(plain), "c32": b.call(plain), "c1_20ms": b.call(slow)},
                ),
                Target(
                    "quorum",
                    quorum.pid,
                    {"c1": q.call(plain), "c32": q.call(plain), "c1_20ms": q.call(slow)},
                ),
            ]
            if x2 is not None:
                w = GrpcPath(x2_addr)
                grpc_paths.append(w)
                paths.append(Target("quorum x2", x2.pid, {"c32": w.call(plain)}))
            if litellm is not None:
                route = f"http://127.0.0.1:{l_port}/route"
                paths.append(
                    Target(
                        "litellm",
                        litellm.pid,
                        {
                            "c1": http_call(http, route, {"prompt": PROMPT, "model": "ok"}),
                            "c32": http_call(http, route, {"prompt": PROMPT, "model": "ok"}),
                            "c1_20ms": http_call(
                                http, route, {"prompt": PROMPT, "model": SLOW_MODEL}
                            ),
                        },
                    )
                )
            print("warming up ...", flush=True)
            for path in paths:
                await warm(path.calls.get("c1") or path.calls["c32"], args.warmup)
                await drive(path.calls["c32"], args.warmup * 4, 32)
            seconds = args.seconds
            scenarios = {"c1": (1, seconds), "c32": (32, seconds), "c1_20ms": (1, seconds)}
            print(f"measuring: {args.rounds} rounds x {seconds:g} s per path and scenario")
            results.update(await measure(paths, scenarios, args.rounds))
            results["rss_mb"] = {p.name: tree_rss_mb(p.pid) for p in paths if p.pid is not None}
            # RSS after many requests: keep driving the 1-worker server to the total.
            served = sum(
                int(results[s]["quorum"]["requests"]) for s in scenarios if "quorum" in results[s]
            )
            served += args.warmup * 5
            more = max(0, args.rss_requests - served)
            if more:
                print(f"driving {more:,} more requests through quorum for the RSS figure ...")
                await drive(q.call(plain), more, 32)
            results["rss_after"] = {
                "requests": max(served, args.rss_requests),
                "rss_mb": tree_rss_mb(quorum.pid),
            }
        if not args.no_consensus:
            results["consensus"] = await consensus_run(base_url, tmp, procs, args)
    finally:
        for pool in grpc_paths:
            await pool.close()
        procs.stop()
    return results


async def consensus_run(
    base_url: str, tmp: Path, procs: Processes, args: argparse.Namespace
) -> dict[str, Any]:
    """Consensus of three voters (5, 10, 20 ms) against one call to the slowest.

    The fake upstream is one Python process: serving three requests at once, it answers
    the slowest later than when serving it alone. That cost is the upstream's, so it is
    measured directly in the same rounds (the three calls at once against the slowest
    alone, no gateway) and taken off: what is left is what Quorum's fan-out adds.
    """
    config = tmp / "consensus.yaml"
    config.write_text(yaml.safe_dump(quorum_config(base_url, consensus=True)))
    address = f"127.0.0.1:{free_port()}"
    procs.add(start_quorum(config, address))
    await wait_serving(address)
    path = GrpcPath(address)
    chat = f"{base_url}/chat/completions"
    bodies = [
        {"model": model_id, "messages": [{"role": "user", "content": PROMPT}]}
        for model_id in VOTERS.values()
    ]
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
            voters = [http_call(http, chat, body) for body in bodies]

            async def fan_out() -> None:
                await asyncio.gather(*(voter() for voter in voters))

            calls = {
                "consensus": path.call(grpc_request(strategy=pb.STRATEGY_CONSENSUS_MAJORITY)),
                "single": path.call(grpc_request(model=SLOWEST_VOTER)),
                "direct_fan_out": fan_out,
                "direct_single": voters[-1],
            }
            try:
                await calls["consensus"]()
            except grpc.aio.AioRpcError as exc:
                return {"error": f"{exc.code().name}: {exc.details()}"}
            for call in calls.values():
                await warm(call, args.warmup // 4)
            tallies = {name: Tally() for name in calls}
            for _ in range(args.rounds):
                for name, call in calls.items():
                    run = await drive(call, 1_000_000, 1, duration_s=args.seconds)
                    tallies[name].add(run, 0.0)
        out: dict[str, Any] = {name: t.summary() for name, t in tallies.items()}

        def added(a: str, b: str, key: str) -> float:
            return float(out[a][key] - out[b][key])

        for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
            raw = added("consensus", "single", key)
            upstream = added("direct_fan_out", "direct_single", key)
            out[f"raw_added_{label}_ms"] = raw
            out[f"upstream_{label}_ms"] = upstream
            out[f"added_{label}_ms"] = raw - upstream
        return out
    finally:
        await path.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="per path, scenario, round")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--rss-requests", type=int, default=None)
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--no-workers", action="store_true")
    parser.add_argument("--no-consensus", action="store_true")
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "performance.png")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "peers.json")
    parser.add_argument(
        "--from-json", type=Path, help="print the table and draw the chart of a saved run"
    )
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        table, checks = report(saved)
        print(table)
        for text, ok, detail in checks:
            print(f"[{'PASS' if ok else 'FAIL'}] {text}: {detail}")
        chart(saved, args.chart)
        return
    quick = args.quick
    args.rounds = args.rounds or (2 if quick else 5)
    args.seconds = args.seconds or (0.6 if quick else 2.0)
    args.warmup = args.warmup or (100 if quick else 300)
    args.rss_requests = args.rss_requests or (5_000 if quick else 100_000)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    started = time.monotonic()
    results = asyncio.run(run(args))
    table, checks = report(results)
    print()
    print(table)
    print()
    cons = results.get("consensus")
    if cons and "error" in cons:
        print(f"consensus: not measured ({cons['error']})")
    for text, ok, detail in checks:
        print(f"[{'PASS' if ok else 'FAIL'}] {text}: {detail}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str))
    chart(results, args.chart)
    print(f"\nchart: {args.chart}; data: {args.json}; took {time.monotonic() - started:.0f} s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
