"""``quorum demo``: a server on the embedded default, a mixed workload, a cost table.

Starts the server in-process on a free loopback port, sends trivial, simple, complex,
code and math prompts through the real gRPC API, and prints per request the task,
difficulty, model, latency, cost and what the premium baseline would have cost.
"""

from __future__ import annotations

import asyncio
import time

from quorum.client import AsyncQuorumClient, QuorumError
from quorum.route.v1 import types_pb2 as pb
from quorum.server.app import create_server
from quorum.server.config import DecisionLogConfig, default_config
from quorum.server.observability.logs import configure_logging

WORKLOAD: tuple[str, ...] = (
    "hi!",
    "What are your opening hours?",
    "Thanks, that's all.",
    "What is 17 * 23?",
    "How many minutes are in 3.5 hours? Calculate it.",
    "Summarize this: The meeting moved to Thursday at 3pm because the room was booked.",
    "Translate 'good morning, how are you?' into French.",
    "Write a Python function that checks whether a string is a palindrome.",
    "Explain the difference between a process and a thread.",
    "Extract the names and dates from: 'Alice met Bob on 3 May; Carol joined on 9 June.'",
    "Design a distributed rate limiter for a multi-region API gateway: analyze the "
    "trade-offs between consistency and latency and explain the failure modes step by step.",
    "Prove that the square root of 2 is irrational, rigorously, step by step.",
    "Review this architecture for a payments migration to event sourcing: what are the "
    "security, consistency and scalability risks, and how would you mitigate each?",
)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


async def run_demo(concurrency: int = 4) -> int:
    """Run the demo; returns the exit code."""
    configure_logging("warning")
    # The table is the output here; decision lines would interleave with it.
    config = default_config().model_copy(update={"decisions": DecisionLogConfig(sink="none")})
    running = create_server(config, "127.0.0.1:0")
    await running.start()
    semaphore = asyncio.Semaphore(max(1, concurrency))
    rows: list[tuple[str, pb.RouteResponse | QuorumError, float]] = []
    try:
        async with AsyncQuorumClient(f"127.0.0.1:{running.port}", timeout=30) as client:

            async def one(prompt: str) -> None:
                async with semaphore:
                    t0 = time.perf_counter()
                    try:
                        result: pb.RouteResponse | QuorumError = await client.route(prompt)
                    except QuorumError as exc:
                        result = exc
                    rows.append((prompt, result, (time.perf_counter() - t0) * 1000))

            await asyncio.gather(*(one(p) for p in WORKLOAD))
    finally:
        await running.drain(1.0)
    order = {p: i for i, p in enumerate(WORKLOAD)}
    rows.sort(key=lambda r: order[r[0]])
    print("Quorum demo — embedded default config; every model below is SIMULATED (no API keys).")
    print()
    header = (
        f"{'prompt':<40} {'task':<13} {'difficulty':<10} {'strategy':<8} {'model':<13} "
        f"{'latency':>9} {'cost':>10} {'premium':>10}"
    )
    print(header)
    print("-" * len(header))
    total = baseline = 0.0
    failures = 0
    for prompt, result, latency in rows:
        if isinstance(result, QuorumError):
            failures += 1
            print(f"{_short(prompt, 40):<40} error: {result.code.name} {result.reason}")
            continue
        difficulty = pb.Difficulty.Name(result.classification.difficulty)
        difficulty = difficulty.removeprefix("DIFFICULTY_").lower()
        strategy = pb.Strategy.Name(result.strategy).removeprefix("STRATEGY_").lower()
        strategy = strategy.replace("consensus_", "")
        total += result.cost_usd
        baseline += result.baseline_cost_usd
        print(
            f"{_short(prompt, 40):<40} {result.classification.task:<13} {difficulty:<10} "
            f"{strategy:<8} {result.model:<13} {latency:>7.1f}ms ${result.cost_usd:>9.6f} "
            f"${result.baseline_cost_usd:>9.6f}"
        )
    print("-" * len(header))
    saving = baseline - total
    share = (saving / baseline * 100) if baseline else 0.0
    print(
        f"{len(rows) - failures} requests: routed cost ${total:.6f} vs premium baseline "
        f"${baseline:.6f} — saved ${saving:.6f} ({share:.1f}%)"
    )
    return 1 if failures else 0
