"""``quorum serve --workers N``: N processes on one port, supervised, drained together."""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from tests.conftest import log_events, sim_config, with_model
from tests.fakes import openai_server
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


def ready_workers(tmp_path: Path) -> int:
    """Workers the supervisor has seen report ready (in the ``supervisor`` log)."""
    return log_events((tmp_path / "serve.log").read_text()).count("worker_ready")


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
        await wait_for(lambda: ready_workers(tmp_path) == 2)
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
        await wait_for(lambda: ready_workers(tmp_path) == 2)  # past their start-up
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


def embedding_config(base_url: str, model: str) -> dict[str, object]:
    """Semantic routes embedded, as each worker starts, by the fake OpenAI endpoint;
    ``model`` picks the fake's behaviour (``slow-<ms>``, ``ratelimit-<s>``)."""
    data = sim_config(
        classifier={
            "embedding": {
                "tasks": {"billing": ["Refund my last invoice", "Why was my card charged"]},
                "remote": {"provider": "embeddings", "model": model},
            }
        }
    )
    data["providers"]["embeddings"] = {
        "kind": "openai",
        "base_url": base_url,
        "api_key_env": "QUORUM_TEST_EMBEDDINGS_KEY",
    }
    return data


def log_records(text: str, event: str) -> list[dict[str, object]]:
    records = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == event:
                records.append(record)
    return records


def test_workers_that_cannot_start_stop_the_command_however_long_start_up_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each worker is told to retry its examples after 2 s, twice, then refuses to start,
    # as serve without --workers does (exit 2): well past any fixed start-up window. The
    # supervisor judges start-up by the workers' ready report, so it stops at once
    # instead of taking the late failure for a crash to restart.
    monkeypatch.setenv("QUORUM_TEST_EMBEDDINGS_KEY", "sk-embeddings")
    with openai_server.serve_in_thread() as fake:
        data = embedding_config(fake.base_url, "ratelimit-2")
        with supervisor(tmp_path, data, f"127.0.0.1:{free_port()}") as proc:
            code = proc.wait(120)
    logs = (tmp_path / "serve.log").read_text()
    assert code == 2, logs[-2000:]
    assert "classifier.embedding.remote: could not embed 2 example utterances" in logs
    events = log_events(logs)
    assert "workers_failing" in events and "workers_stopped" in events
    assert "worker_restarted" not in events and "worker_ready" not in events
    (exited, *_) = log_records(logs, "worker_exited")
    assert exited["ready"] is False and exited["code"] == 2
    assert float(str(exited["lived_s"])) >= 4.0  # two waits of 2 s: a slow start-up


def test_a_first_worker_killed_before_it_is_ready_stops_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The endpoint holds each worker's start-up (its examples) for a minute: both are
    # provably not ready when one is killed. A worker that dies before it was ready,
    # however it dies, stops them all (exit 1: not a refusal).
    monkeypatch.setenv("QUORUM_TEST_EMBEDDINGS_KEY", "sk-embeddings")
    with openai_server.serve_in_thread() as fake:
        data = embedding_config(fake.base_url, "slow-60000")
        with supervisor(tmp_path, data, f"127.0.0.1:{free_port()}") as proc:
            asyncio.run(wait_for(lambda: fake.server.stats.requests == 2, timeout=60))
            workers = children(proc.pid)
            os.kill(workers[0], signal.SIGKILL)
            code = proc.wait(60)
        assert not alive(workers)
    logs = (tmp_path / "serve.log").read_text()
    assert code == 1, logs[-2000:]
    events = log_events(logs)
    assert "workers_failing" in events
    assert "worker_restarted" not in events and "worker_ready" not in events


def serve_command(*flags: str, workers: int | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(QUORUM), "serve", *flags]
    if workers is not None:
        command += ["--workers", str(workers)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_workers_refuse_a_missing_key_once_as_serve_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every worker would refuse it: the supervisor says so once, before any starts, and
    # exits as serve without --workers does.
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    config = Path(__file__).resolve().parents[2] / "examples" / "providers.yaml"
    flags = ("--config", str(config), "--address", f"127.0.0.1:{free_port()}")
    alone = serve_command(*flags)
    workers = serve_command(*flags, workers=2)
    assert alone.returncode == workers.returncode == 2
    assert workers.stderr == alone.stderr
    assert workers.stderr.count("OPENAI_API_KEY is not set") == 1
    assert "workers_started" not in workers.stderr and "Traceback" not in workers.stderr


def _taken_port_after_a_free_one() -> tuple[socket.socket, int]:
    """A listening socket on port P+1 where P is free (the metrics port of worker 1)."""
    for _ in range(50):
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1] - 1
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                taken.close()
                continue
        taken.listen()
        return taken, port
    raise RuntimeError("no free port below an ephemeral one")


def test_workers_refuse_a_taken_metrics_port_before_any_starts(tmp_path: Path) -> None:
    config = tmp_path / "quorum.yaml"
    config.write_text(yaml.safe_dump(sim_config()))
    flags = ("--config", str(config), "--address", f"127.0.0.1:{free_port()}")
    taken, metrics = _taken_port_after_a_free_one()
    with taken:
        done = serve_command(*flags, "--metrics-address", f"127.0.0.1:{metrics}", workers=2)
    assert done.returncode == 2  # as serve without --workers on a taken metrics port
    assert done.stderr == (
        f"quorum serve: cannot listen on 127.0.0.1:{metrics + 1}: Address already in use "
        "(the metrics port of worker 1)\n"
    )
    for address, problem in (
        ("127.0.0.1:0", "--workers needs a fixed metrics port"),
        ("127.0.0.1:65535", "--workers 2 needs metrics ports up to 65536"),
    ):
        done = serve_command(*flags, "--metrics-address", address, workers=2)
        assert done.returncode == 2
        assert done.stderr.startswith(f"quorum serve: {problem}")
        assert "workers_started" not in done.stderr
