"""The decision log through a Redis outage: Feedback that cannot reach the shared index
is told to retry (not that the decision is unknown), and decisions and decision-log lines
Redis could not take are written once it is back, in order, within a bounded backlog."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

import grpc
import pytest
import redis
import structlog

from quorum.server import decisions
from quorum.server.config import parse_config
from quorum.server.decisions import DecisionLog, Feedback
from quorum.server.domain import Message, Role, RouteRequest
from quorum.server.errors import NotFound, ResourceExhausted
from quorum.server.router import Router
from tests.conftest import RedisServer, sim_config


@asynccontextmanager
async def replica(redis_url: str, **decision_log: Any) -> AsyncIterator[Router]:
    """A router sharing the decision index through ``redis_url`` (no log lines unless
    ``decision_log`` says so)."""
    data = sim_config(state={"redis_url": redis_url}, decisions={"sink": "none", **decision_log})
    router = Router(parse_config(data))
    try:
        yield router
    finally:
        await router.close()


async def route(router: Router, request_id: str) -> None:
    await router.route(RouteRequest(request_id, (Message(Role.USER, "What is 2+2?"),)))


def thumbs_up(request_id: str) -> Feedback:
    return Feedback(request_id, "thumbs_up")


async def until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


def indexed(redis_server: RedisServer, request_id: str) -> bool:
    store = redis.Redis.from_url(redis_server.url)
    try:
        return bool(store.exists(f"quorum:decisions:id:{request_id}"))
    finally:
        store.close()


async def found(router: Router, request_id: str, timeout: float = 5.0) -> bool:
    """Whether Feedback on ``request_id`` is taken by ``router`` within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await router.feedback(thumbs_up(request_id))
            return True
        except (NotFound, ResourceExhausted):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)


# -- Feedback while the index cannot be read -----------------------------------------


async def test_feedback_is_retryable_not_not_found_while_the_index_cannot_be_read(
    redis_server: RedisServer,
) -> None:
    async with replica(redis_server.url) as a, replica(redis_server.url) as b:
        await route(a, "made-on-a")
        assert await until(lambda: indexed(redis_server, "made-on-a"))
        redis_server.stop()
        with pytest.raises(ResourceExhausted) as info:
            await b.feedback(thumbs_up("made-on-a"))
        error = info.value
        assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.reason == "DECISION_STORE_UNAVAILABLE"
        assert error.retry_after_s == 1.0
        assert "'made-on-a'" in error.message and "retry" in error.message
        assert error.metadata == {"request_id": "made-on-a"}
        # What a replica holds itself needs no Redis.
        await a.feedback(thumbs_up("made-on-a"))
        redis_server.start()  # back, and empty: now an answer "no such key" is NOT_FOUND
        with pytest.raises(NotFound):
            await b.feedback(thumbs_up("made-on-a"))


@contextmanager
def blackholed_redis() -> Iterator[str]:
    """A Redis URL where connecting hangs, as behind a dropped route: a listener that
    never accepts, its queue full, so the kernel ignores further connection attempts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = []
    for _ in range(3):
        sock = socket.socket()
        sock.setblocking(False)
        with suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        queued.append(sock)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for sock in queued:
            sock.close()
        listener.close()


async def test_feedback_gives_up_on_an_unreachable_index_within_its_timeout() -> None:
    # Connecting is bounded like every other Redis call (redis-py would wait 5 s).
    with blackholed_redis() as url:
        log = DecisionLog(sink="none", redis_url=url)
        started = time.monotonic()
        with pytest.raises(ResourceExhausted) as info:
            await log.feedback(thumbs_up("anything"))
        took = time.monotonic() - started
        await log.close()
    assert info.value.reason == "DECISION_STORE_UNAVAILABLE"
    assert took < 2.0


# -- decisions made while Redis is down ----------------------------------------------


async def test_a_decision_made_in_an_outage_is_indexed_after_the_next_write(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decisions, "_RETRY_INTERVAL_S", 3600.0)  # no retry by the clock
    async with replica(redis_server.url) as a, replica(redis_server.url) as b:
        redis_server.stop()
        await route(a, "in-outage")
        assert await until(lambda: a.decisions.held == (0, 1))  # its index write failed
        redis_server.start()
        assert not indexed(redis_server, "in-outage")
        await route(a, "after-outage")  # a write that succeeds replays what was held
        assert await found(b, "in-outage")
        assert await found(b, "after-outage")
        assert a.decisions.index_dropped == 0


async def test_a_decision_made_in_an_outage_is_indexed_without_further_traffic(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decisions, "_RETRY_INTERVAL_S", 0.1)
    async with replica(redis_server.url) as a, replica(redis_server.url) as b:
        redis_server.stop()
        await route(a, "quiet-outage")
        assert await until(lambda: a.decisions.held == (0, 1))
        redis_server.start()
        assert await until(lambda: indexed(redis_server, "quiet-outage"))
        assert await found(b, "quiet-outage")


class _Clock:
    """``time`` for the decision log, its monotonic clock moved on at will."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead

    def time(self) -> float:
        return time.time()


async def test_a_held_decision_past_its_retention_is_not_written(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    monkeypatch.setattr(decisions, "time", clock)
    monkeypatch.setattr(decisions, "_RETRY_INTERVAL_S", 3600.0)
    async with replica(redis_server.url, retention_s=100) as a:
        redis_server.stop()
        await route(a, "old")
        clock.ahead = 60
        await route(a, "young")
        assert await until(lambda: a.decisions.held == (0, 2))
        clock.ahead = 150  # "old" is 150 s old: past retention; "young" has 10 s left
        redis_server.start()
        await route(a, "now")
        assert await until(lambda: indexed(redis_server, "young"))
        store = redis.Redis.from_url(redis_server.url)
        young_ttl = store.ttl("quorum:decisions:id:young")
        now_ttl = store.ttl("quorum:decisions:id:now")
        assert not store.exists("quorum:decisions:id:old")
        store.close()
    assert 0 < young_ttl <= 10  # kept for what was left of its retention
    assert 90 < now_ttl <= 100


async def test_the_held_decisions_are_bounded_and_the_oldest_dropped(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decisions, "_INDEX_BACKLOG_LIMIT", 3)
    monkeypatch.setattr(decisions, "_RETRY_INTERVAL_S", 3600.0)
    async with replica(redis_server.url) as a:
        redis_server.stop()
        with structlog.testing.capture_logs() as logs:
            for i in range(5):
                await route(a, f"held-{i}")
            assert await until(lambda: a.decisions.index_dropped == 2)
            assert a.decisions.held == (0, 3)
            redis_server.start()
            await route(a, "back")
            assert await until(lambda: indexed(redis_server, "held-2"))
            assert await until(lambda: any(e["event"].endswith("recovered") for e in logs))
        assert [i for i in range(5) if indexed(redis_server, f"held-{i}")] == [2, 3, 4]
    events = [e for e in logs if e["event"].startswith("decision_index")]
    # One warning per outage, not one per decision.
    assert [e["event"] for e in events] == [
        "decision_index_write_failed",
        "decision_index_backlog_full",
        "decision_index_write_recovered",
    ]
    assert events[1]["limit"] == 3
    assert (events[2]["written"], events[2]["dropped"]) == (3, 2)


# -- decision-log lines for the Redis stream -----------------------------------------


def stream_records(redis_server: RedisServer) -> list[dict[str, Any]]:
    store = redis.Redis.from_url(redis_server.url)
    try:
        entries = store.xrange("quorum:decisions") or []
    finally:
        store.close()
    return [json.loads(fields[b"record"]) for _, fields in entries]  # type: ignore[index]


async def holding(log: DecisionLog, *, lines: int, dropped: int = 0) -> bool:
    """Whether ``log`` comes to hold ``lines`` lines for Redis, having dropped ``dropped``."""
    return await until(lambda: log.held == (lines, 0) and log.dropped == dropped)


async def test_lines_written_in_an_outage_reach_the_stream_in_order(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decisions, "_RETRY_INTERVAL_S", 3600.0)
    log = DecisionLog(sink="redis", redis_url=redis_server.url, flush_interval_s=0)
    log.note({"type": "note", "n": 0})
    assert await until(lambda: len(stream_records(redis_server)) == 1)
    redis_server.stop()
    with structlog.testing.capture_logs() as logs:
        for n in range(1, 5):  # several flushes, each failing
            log.note({"type": "note", "n": n})
            assert await holding(log, lines=n)
        redis_server.start()
        log.note({"type": "note", "n": 5})
        assert await until(lambda: len(stream_records(redis_server)) == 5)
    await log.close()
    assert [r["n"] for r in stream_records(redis_server)] == [1, 2, 3, 4, 5]  # a new Redis
    assert log.dropped == 0
    events = [e["event"] for e in logs if e["event"].startswith("decision_log")]
    assert events == ["decision_log_write_failed", "decision_log_write_recovered"]


async def test_lines_held_in_an_outage_are_written_without_further_traffic(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decisions, "_RETRY_INTERVAL_S", 0.1)
    log = DecisionLog(sink="redis", redis_url=redis_server.url, flush_interval_s=0)
    redis_server.stop()
    for n in range(3):
        log.note({"type": "note", "n": n})
    assert await until(lambda: log.held == (3, 0))
    redis_server.start()
    assert await until(lambda: len(stream_records(redis_server)) == 3)
    await log.close()
    assert [r["n"] for r in stream_records(redis_server)] == [0, 1, 2]


async def test_held_lines_are_bounded_and_the_oldest_dropped(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decisions, "_STREAM_BACKLOG_LIMIT", 3)
    monkeypatch.setattr(decisions, "_RETRY_INTERVAL_S", 3600.0)
    log = DecisionLog(sink="redis", redis_url=redis_server.url, flush_interval_s=0)
    redis_server.stop()
    with structlog.testing.capture_logs() as logs:
        for n in range(5):
            log.note({"type": "note", "n": n})
            assert await holding(log, lines=min(n + 1, 3), dropped=max(0, n - 2))
        redis_server.start()
        log.note({"type": "note", "n": 5})
        assert await until(lambda: len(stream_records(redis_server)) == 4)
        await log.close()
    assert [r["n"] for r in stream_records(redis_server)] == [2, 3, 4, 5]
    events = [e for e in logs if e["event"].startswith("decision_log")]
    assert [e["event"] for e in events] == [
        "decision_log_write_failed",
        "decision_log_backlog_full",
        "decision_log_write_recovered",
    ]
    assert (events[2]["written"], events[2]["dropped"]) == (4, 2)


async def test_lines_still_held_at_close_are_counted_as_dropped(
    redis_server: RedisServer,
) -> None:
    log = DecisionLog(sink="redis", redis_url=redis_server.url, flush_interval_s=0)
    redis_server.stop()
    with structlog.testing.capture_logs() as logs:
        for n in range(3):
            log.note({"type": "note", "n": n})
        assert await until(lambda: log.held == (3, 0))
        assert log.dropped == 0  # held, not yet lost
        await log.close()
    assert log.dropped == 3
    (closing,) = [e for e in logs if e["event"] == "decision_log_unwritten_at_close"]
    assert (closing["lines"], closing["decisions"]) == (3, 0)
