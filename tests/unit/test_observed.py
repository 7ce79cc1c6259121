"""Observed outcome windows: the in-process store, and the Redis one's fallback."""

from __future__ import annotations

import socket

import pytest
import redis.asyncio as aioredis

from quorum.server import observed
from quorum.server.config import parse_config
from quorum.server.observed import LocalWindows, RedisWindows, build_observed
from tests.conftest import sim_config


@pytest.mark.parametrize(
    ("outcomes", "window", "min_samples", "rate"),
    [
        ([], 4, 2, None),
        ([True], 4, 2, None),  # too few samples to trust
        ([True, False], 4, 2, 0.5),
        ([True, True, True, True, False, False], 4, 2, 0.5),  # only the last 4 count
        ([False] * 10, 4, 2, 0.0),
    ],
)
def test_local_window(
    outcomes: list[bool], window: int, min_samples: int, rate: float | None
) -> None:
    windows = LocalWindows(window, min_samples)
    for outcome in outcomes:
        windows.record("/cheap", outcome)
    assert windows.rates().get("/cheap") == rate


def test_keys_are_independent() -> None:
    windows = LocalWindows(4, 1)
    windows.record("/cheap", True)
    windows.record("email/cheap", False)
    assert windows.rates() == {"/cheap": 1.0, "email/cheap": 0.0}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_redis_falls_back_to_local_windows() -> None:
    client = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{_closed_port()}/0", socket_connect_timeout=0.2, socket_timeout=0.2
    )
    windows = RedisWindows(client, "escalation", window=4, min_samples=1, refresh_s=0.01)
    windows.start()
    windows.record("/cheap", True)  # never raises
    await windows.refresh()
    await windows.close()
    await client.aclose()
    assert not windows.healthy
    assert windows.rates() == {"/cheap": 1.0}


def test_redis_only_when_configured() -> None:
    local = build_observed(parse_config(sim_config()))
    assert isinstance(local.escalations, LocalWindows)
    shared = build_observed(parse_config(sim_config(state={"redis_url": "redis://127.0.0.1:1/0"})))
    assert isinstance(shared.escalations, RedisWindows)
    assert isinstance(shared.accuracy, RedisWindows)


def test_keys_are_bounded_so_callers_cannot_grow_the_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Keys carry a caller's task hint: past the bound new keys are not learned, while
    # the known ones keep learning.
    monkeypatch.setattr(observed, "MAX_KEYS", 3)
    windows = LocalWindows(window=10, min_samples=1)
    for i in range(10):
        windows.record(f"flash/task-{i}", True)
    windows.record("flash/task-0", False)
    assert sorted(windows.rates()) == ["flash/task-0", "flash/task-1", "flash/task-2"]
    assert windows.rates()["flash/task-0"] == 0.5
