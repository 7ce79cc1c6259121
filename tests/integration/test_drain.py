"""The real ``quorum serve`` process: SIGTERM drains in-flight work and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from quorum.client import AsyncQuorumClient, QuorumError
from tests.conftest import log_events, sim_config, with_model

QUORUM = Path(sys.executable).with_name("quorum")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_serving(address: str, timeout: float = 15.0) -> None:
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


async def test_sigterm_drains_in_flight_request_and_exits_zero(tmp_path: Path) -> None:
    data = sim_config()
    data["server"] = {"grace_period_s": 5}
    for name in data["models"]:
        data = with_model(data, name, simulated={"latency_ms_p50": 1200, "latency_ms_p95": 1200})
    config = tmp_path / "quorum.yaml"
    config.write_text(yaml.safe_dump(data))
    address = f"127.0.0.1:{free_port()}"
    log_path = tmp_path / "serve.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [str(QUORUM), "serve", "--config", str(config), "--address", address],
        stdout=subprocess.DEVNULL,
        stderr=log_file,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        await wait_serving(address)
        async with grpc.aio.insecure_channel(address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service="quorum.route.v1.RouteService")
            )
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            async with AsyncQuorumClient(address, timeout=10) as client:
                in_flight = asyncio.create_task(client.route("hello"))
                await asyncio.sleep(0.3)
                sent = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                update = await asyncio.wait_for(watch.read(), timeout=1.0)
                assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
                assert time.monotonic() - sent < 0.5
                response = await in_flight
                assert response.content
        code = await asyncio.to_thread(proc.wait, 10)
        assert code == 0
        assert time.monotonic() - sent < 5 + 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log_file.close()
    logs = log_path.read_text()
    events = log_events(logs)
    assert "draining" in events
    assert "stopped" in events


async def test_new_rpcs_are_refused_while_draining(tmp_path: Path) -> None:
    data = sim_config()
    data["server"] = {"grace_period_s": 3}
    data = with_model(data, "flash", simulated={"latency_ms_p50": 1500, "latency_ms_p95": 1500})
    config = tmp_path / "quorum.yaml"
    config.write_text(yaml.safe_dump(data))
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [str(QUORUM), "serve", "--config", str(config), "--address", address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        await wait_serving(address)
        async with AsyncQuorumClient(address, timeout=10) as client:
            in_flight = asyncio.create_task(client.route("hello"))
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            async with AsyncQuorumClient(address, timeout=2) as fresh:
                with pytest.raises(QuorumError) as info:
                    await fresh.route("hello")
            assert info.value.code is grpc.StatusCode.UNAVAILABLE
            assert (await in_flight).content
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_sigterm_while_starting_exits_zero(tmp_path: Path) -> None:
    # Kubernetes may stop a pod that has only just started (a rollout moving on): that is
    # a clean exit, not death by the signal's default action.
    config = tmp_path / "quorum.yaml"
    config.write_text(yaml.safe_dump(sim_config()))
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [str(QUORUM), "serve", "--config", str(config), "--address", address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        assert proc.stderr is not None
        # The first log line comes while the server is being built, before it serves.
        first = await asyncio.to_thread(proc.stderr.readline)
        assert b"auth_off" in first, first
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=30)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        assert b"Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
