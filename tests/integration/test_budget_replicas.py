"""Two real ``quorum serve`` replicas share one budget through one real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import redis.asyncio as aioredis
import yaml

from quorum.client import AsyncQuorumClient, QuorumError
from quorum.route.v1 import types_pb2 as pb
from quorum.server.budget.ledger import MICROS, Budgets, MemoryBudgetStore
from quorum.server.config import parse_config
from tests.conftest import RedisServer
from tests.integration.test_budget import CHAT, estimate, one_model_config
from tests.integration.test_drain import free_port, wait_serving

QUORUM = Path(sys.executable).with_name("quorum")


async def test_two_replicas_on_one_redis_cannot_overspend_a_budget_for_50(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    data = one_model_config()
    each = await estimate(data, CHAT)
    limit = 50 * each
    data["tenants"]["acme"]["budget"] = {"daily_usd": limit}
    data["state"] = {"redis_url": redis_server.url}
    # Budgets are what is under test: on a busy 2-core machine 200 calls in 0.8 s can
    # queue past the shedding target, and a shed call would hide a budget refusal.
    data["admission"] = {"max_queue_delay_ms": None}
    config_path = tmp_path / "quorum.yaml"
    config_path.write_text(yaml.safe_dump(data))
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    procs = [
        subprocess.Popen(
            [str(QUORUM), "serve", "--config", str(config_path), "--address", address],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        for address in addresses
    ]
    try:
        await asyncio.gather(*(wait_serving(a) for a in addresses))
        clients = [AsyncQuorumClient(a, timeout=20) for a in addresses]

        async def one(i: int) -> pb.RouteResponse:
            await asyncio.sleep(i * 0.004)
            return await clients[i % 2].route(CHAT, tenant="acme")

        results = await asyncio.gather(*(one(i) for i in range(200)), return_exceptions=True)
        for client in clients:
            await client.close()
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    answered = [r for r in results if isinstance(r, pb.RouteResponse)]
    refused = [r for r in results if isinstance(r, QuorumError)]
    assert len(answered) + len(refused) == 200, [r for r in results if isinstance(r, Exception)]
    assert all(e.code is grpc.StatusCode.RESOURCE_EXHAUSTED for e in refused)
    assert {e.reason for e in refused} == {"BUDGET_EXHAUSTED"}
    by_replica = [sum(1 for i, r in enumerate(results) if i % 2 == k and r in answered)
                  for k in (0, 1)]  # fmt: skip
    total = sum(r.cost_usd for r in answered)
    print(
        f"two replicas: limit ${limit:.6f} (50 x ${each:.6f}), {len(answered)} answered "
        f"({by_replica[0]} + {by_replica[1]}), spent ${total:.6f}, "
        f"overspend ${max(0.0, total - limit):.6f}"
    )
    assert min(by_replica) > 0  # both replicas served from the one budget
    assert len(answered) >= 45
    assert total <= limit + each
    # Redis holds what was spent, settled to the actual costs, nothing left reserved.
    config = parse_config(data)
    budgets = Budgets(config.budgets, MemoryBudgetStore())
    (counter,) = budgets.counters("acme", config.tenants["acme"].budget)
    shared = aioredis.Redis.from_url(redis_server.url)
    spent, reserved = await shared.hmget(counter.key, ["spent", "reserved"])
    await shared.aclose()
    assert abs(int(spent or 0) / MICROS - total) <= 1e-6 * len(answered)
    assert int(reserved or 0) == 0
