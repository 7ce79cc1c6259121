"""Shared test helpers: configs built from dicts and real servers on loopback."""

from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from quorum.client import AsyncQuorumClient
from quorum.server.app import RunningServer, create_server
from quorum.server.config import Config, parse_config

FAST_SIM = {"latency_ms_p50": 2, "latency_ms_p95": 4}


@pytest.fixture(autouse=True)
def _no_queue_shedding_in_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server under test in this process shares the event loop with the test's own
    clients and fake upstreams, so a burst of the test's calls reads as a queueing
    backlog and shedding would refuse them; it stays off unless a test is marked
    ``queue_shedding``. (Servers started as processes keep the configured default.)"""
    if request.node.get_closest_marker("queue_shedding") is None:
        monkeypatch.setattr("quorum.server.app.LoadShedder", lambda target_s: None)


def log_events(text: str) -> list[str]:
    """The ``event`` of every JSON log line in ``text`` (other lines are skipped)."""
    events = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record:
            events.append(str(record["event"]))
    return events


def sim_config(**overrides: Any) -> dict[str, Any]:
    """A small all-simulated config with fast models; ``overrides`` are merged at the top."""
    data: dict[str, Any] = {
        "providers": {"sim": {"kind": "simulated"}, "sim-b": {"kind": "simulated"}},
        "tiers": ["cheap", "mid", "premium"],
        "models": {
            "flash": {
                "provider": "sim",
                "tier": "cheap",
                "input_usd_per_mtok": 0.1,
                "output_usd_per_mtok": 0.4,
                "capabilities": ["tools", "json_mode", "json_schema", "streaming"],
                "simulated": dict(FAST_SIM, skill={"low": 1.0, "medium": 1.0, "high": 1.0}),
            },
            "flash-b": {
                "provider": "sim-b",
                "tier": "cheap",
                "input_usd_per_mtok": 0.15,
                "output_usd_per_mtok": 0.6,
                "capabilities": ["tools", "json_mode", "json_schema", "streaming"],
                "simulated": dict(FAST_SIM, skill={"low": 1.0, "medium": 1.0, "high": 1.0}),
            },
            "mid": {
                "provider": "sim",
                "tier": "mid",
                "input_usd_per_mtok": 0.8,
                "output_usd_per_mtok": 3.2,
                "capabilities": ["tools", "vision", "json_mode", "streaming"],
                "simulated": dict(FAST_SIM, skill={"low": 1.0, "medium": 1.0, "high": 1.0}),
            },
            "frontier": {
                "provider": "sim-b",
                "tier": "premium",
                "input_usd_per_mtok": 5.0,
                "output_usd_per_mtok": 25.0,
                "capabilities": ["tools", "vision", "json_mode", "json_schema", "streaming"],
                "simulated": dict(FAST_SIM, skill={"low": 1.0, "medium": 1.0, "high": 1.0}),
            },
        },
        "routing": {
            "baseline_model": "frontier",
            "difficulty_tiers": {"low": "cheap", "medium": "mid", "high": "premium"},
            "use_cases": {"autocomplete": {"tier": "cheap"}, "legal_review": {"tier": "premium"}},
            # Tests pin which model answers; exploration has its own tests.
            "performance": {"explore_share": 0.0},
        },
        "decisions": {"sink": "none"},
    }
    data = copy.deepcopy(data)
    for key, value in overrides.items():
        data[key] = value
    return data


def with_model(data: dict[str, Any], name: str, **fields: Any) -> dict[str, Any]:
    """Return ``data`` with fields of model ``name`` changed (nested dicts merged)."""
    data = copy.deepcopy(data)
    model = data["models"][name]
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(model.get(key), dict):
            model[key] = {**model[key], **value}
        else:
            model[key] = value
    return data


@asynccontextmanager
async def running_server(config: Config) -> AsyncIterator[tuple[RunningServer, AsyncQuorumClient]]:
    """A started server on a free loopback port and an async client for it."""
    running = create_server(config, "127.0.0.1:0")
    await running.start()
    client = AsyncQuorumClient(f"127.0.0.1:{running.port}", timeout=10)
    try:
        yield running, client
    finally:
        await client.close()
        await running.drain(0.5)


ServerFactory = Callable[[dict[str, Any]], Any]


@pytest.fixture
def config_from() -> Callable[[dict[str, Any]], Config]:
    return parse_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real ``redis-server`` on a free loopback port, no persistence; restartable."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (make test installs it)")
        self.binary = binary
        self.port = _free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh real Redis for one test (kill and restart it to test outages)."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
