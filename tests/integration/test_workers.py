"""``quorum serve --workers N``: N processes on one port, supervised, drained together."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from quorum.client import AsyncQuorumClient
from quorum.route.v1 import route_service_pb2_grpc as svc_grpc
from quorum.route.v1 import types_pb2 as pb
from quorum.server.workers import STARTUP_S
from tests.conftest import log_events, sim_config, with_model
from tests.integration.test_drain import free_port, wait_serving

QUORUM = Path(sys.executable).with_name("quorum")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(c) for c in task.read_text().split()]
    return sorted(found)


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def listeners(port: int) -> int:
    """Listening sockets on ``port`` (one per worker with SO_REUSEPORT; grpc listens on
    an IPv6 socket, with the IPv4 address mapped)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            count += local.endswith(f":{port:04X}") and state == "0A"
    return count


@contextlib.contextmanager
def supervisor(
    tmp_path: Path, data: dict[str, object], address: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``quorum serve --workers 2`` in its own session: killed whole if a test fails."""
    config = tmp_path / "quorum.yaml"
    config.write_text(yaml.safe_dump(data))
    with (tmp_path / "serve.log").open("wb") as log_file:
        proc = subprocess.Popen(
            [QUORUM, "serve", "--config", config, "--address", address, "--workers", "2"],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


async def wait_for(condition: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


async def route_on_fresh_connections(address: str, count: int) -> None:
    """One RPC on each of ``count`` separate connections (spread over the workers)."""
    request = pb.RouteRequest(messages=[pb.Message(role=pb.ROLE_USER, content="hello")])
    for _ in range(count):
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(address, options=options) as channel:
            reply = await svc_grpc.RouteServiceStub(channel).Route(request, timeout=10)
            assert reply.content


async def test_workers_share_one_port_are_supervised_and_drain_on_sigterm(
    tmp_path: Path,
) -> None:
    data = sim_config()
    data["server"] = {"grace_period_s": 5}
    for name in data["models"]:
        data = with_model(data, name, simulated={"latency_ms_p50": 800, "latency_ms_p95": 800})
    port = free_port()
    address = f"127.0.0.1:{port}"
    with supervisor(tmp_path, data, address) as proc:
        await wait_serving(address)
        await wait_for(lambda: len(children(proc.pid)) == 2 and listeners(port) == 2)
        first, second = children(proc.pid)
        await route_on_fresh_connections(address, 2)
        # A worker that dies after start-up is replaced; the other keeps serving.
        await asyncio.sleep(max(0.0, STARTUP_S + 0.2 - 1.0))
        os.kill(first, signal.SIGKILL)
        await wait_for(
            lambda: (
                len(children(proc.pid)) == 2
                and first not in children(proc.pid)
                and listeners(port) == 2
            )
        )
        assert second in children(proc.pid)
        workers = children(proc.pid)
        await route_on_fresh_connections(address, 2)
        # SIGTERM: every worker drains its in-flight RPCs, then the supervisor exits 0.
        async with AsyncQuorumClient(address, timeout=10) as client:
            in_flight = asyncio.create_task(client.route("hello"))
            await asyncio.sleep(0.3)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert (await in_flight).content
        assert await asyncio.to_thread(proc.wait, 10) == 0
        assert time.monotonic() - sent < 5 + 2
        assert not alive(workers)
    logs = (tmp_path / "serve.log").read_text()
    events = log_events(logs)
    assert "workers_started" in events
    assert "worker_restarted" in events
    assert events.count("stopped") == 2  # each worker drained
    assert '"worker":1' in logs.replace(" ", "")


async def test_workers_share_the_http_front_door_too(tmp_path: Path) -> None:
    import aiohttp

    data = sim_config()
    http_port = free_port()
    data["server"] = {"http_address": f"127.0.0.1:{http_port}"}
    port = free_port()
    address = f"127.0.0.1:{port}"
    with supervisor(tmp_path, data, address) as proc:
        await wait_serving(address)
        await wait_for(lambda: len(children(proc.pid)) == 2 and listeners(http_port) == 2)
        body = {"model": "quorum:auto", "messages": [{"role": "user", "content": "hello"}]}
        for _ in range(4):  # a fresh connection each time: the kernel spreads them
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{http_port}/v1/chat/completions"
                async with http.post(url, json=body) as response:
                    assert response.status == 200
                    answer = await response.json()
            assert answer["choices"][0]["message"]["content"]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--address", "127.0.0.1:0"], "--workers needs a fixed port"),
        (["--http-address", "127.0.0.1:0"], "(server.http_address)"),
    ],
    ids=["grpc", "http"],
)
def test_workers_need_a_fixed_port(tmp_path: Path, flags: list[str], names: str) -> None:
    config = tmp_path / "quorum.yaml"
    config.write_text(yaml.safe_dump(sim_config()))
    address = f"127.0.0.1:{free_port()}"
    command = [str(QUORUM), "serve", "--config", str(config), "--address", address]
    done = subprocess.run(
        [*command, "--workers", "2", *flags],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "--workers needs a fixed port" in done.stderr
    assert names in done.stderr


def test_spend_limits_with_workers_need_shared_state(tmp_path: Path) -> None:
    # Each worker would otherwise enforce the whole budget: N times the limit.
    data = sim_config()
    data["budgets"] = {"all_tenants": {"daily_usd": 0.01}}
    config = tmp_path / "quorum.yaml"
    config.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [QUORUM, "serve", "--config", config, "--address", "127.0.0.1:0", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("state.redis_url: spend limits with --workers 2")


async def test_a_worker_crashing_again_at_once_is_restarted_without_stopping_the_rest(
    tmp_path: Path,
) -> None:
    # A poison request retried by clients, a quick out-of-memory kill: the replacement
    # dies within seconds too. It is restarted after a growing pause; the healthy worker
    # keeps serving and the supervisor keeps running.
    port = free_port()
    address = f"127.0.0.1:{port}"
    with supervisor(tmp_path, sim_config(), address) as proc:
        await wait_serving(address)
        await wait_for(lambda: len(children(proc.pid)) == 2 and listeners(port) == 2)
        await asyncio.sleep(STARTUP_S + 0.2)  # the first workers are past their start-up
        first, second = children(proc.pid)
        os.kill(first, signal.SIGKILL)
        await wait_for(lambda: len(children(proc.pid)) == 2 and first not in children(proc.pid))
        (replacement,) = [p for p in children(proc.pid) if p != second]
        os.kill(replacement, signal.SIGKILL)  # within its start-up: a quick death
        await wait_for(
            lambda: len(children(proc.pid)) == 2 and replacement not in children(proc.pid)
        )
        assert proc.poll() is None and second in children(proc.pid)
        await route_on_fresh_connections(address, 2)
    events = log_events((tmp_path / "serve.log").read_text())
    assert events.count("worker_restarted") == 2 and "workers_failing" not in events


def test_workers_refuse_a_port_another_server_listens_on(tmp_path: Path) -> None:
    # SO_REUSEPORT would let a second `serve --workers` share it and split the traffic.
    config = tmp_path / "quorum.yaml"
    config.write_text(yaml.safe_dump(sim_config()))
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                QUORUM,
                "serve",
                "--config",
                config,
                "--address",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
