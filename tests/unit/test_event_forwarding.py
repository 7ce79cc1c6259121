"""forward(): the events a routing task emits reach the consumer in order, and the task's
own I/O goes first."""

from __future__ import annotations

import asyncio
import gc

from quorum.server.execute.events import AttemptStarted, Chunk, Event
from quorum.server.execute.stream import EventQueue, forward


async def test_an_upstream_write_started_after_an_event_goes_out_before_the_event() -> None:
    # The HTTP client writes a request's bytes in a task of its own, scheduled after the
    # attempt event was queued: handing the event on (converting it, writing it to the
    # caller) must not delay that write, or it delays the first token.
    sink = EventQueue()
    order: list[str] = []

    async def write_request() -> None:
        order.append("request written")

    async def work() -> str:
        sink.emit(AttemptStarted("m", "p", "primary"))
        writer = asyncio.get_running_loop().create_task(write_request())
        await asyncio.sleep(0.01)  # waiting for the upstream's answer
        await writer
        sink.emit(Chunk("m", text="Hello"))
        return "done"

    received: list[Event | str] = []
    async for item in forward(work(), sink):
        if isinstance(item, AttemptStarted):
            order.append("event handed on")
        received.append(item)
    assert order == ["request written", "event handed on"]
    assert received == [AttemptStarted("m", "p", "primary"), Chunk("m", text="Hello"), "done"]


async def test_closing_the_consumer_cancels_the_work() -> None:
    sink = EventQueue()
    cancelled = asyncio.Event()

    async def work() -> str:
        sink.emit(AttemptStarted("m", "p", "primary"))
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    events = forward(work(), sink)
    assert isinstance(await anext(events), AttemptStarted)
    await events.aclose()
    assert cancelled.is_set()


async def test_a_reader_that_falls_behind_holds_the_producer_at_the_backlog() -> None:
    sink = EventQueue(backlog=8)
    produced = 0

    async def work() -> str:
        nonlocal produced
        for i in range(1000):
            sink.emit(Chunk("m", text=str(i)))
            produced += 1
            await sink.drained()
        return "done"

    events = forward(work(), sink)
    first = await anext(events)
    await asyncio.sleep(0.05)  # the reader is busy: the producer must not run ahead
    assert produced <= 8 + 1  # the one read and a full backlog
    received = [first] + [item async for item in events]
    # Nothing lost once the reader catches up, and in order.
    assert received[-1] == "done"
    assert [c.text for c in received[:-1] if isinstance(c, Chunk)] == [str(i) for i in range(1000)]


async def test_closing_the_consumer_after_the_work_failed_leaves_no_unread_error() -> None:
    # A caller whose deadline passes as the routing task fails closes the stream before
    # the error is read: asyncio must not print it as "Task exception was never retrieved".
    sink = EventQueue()
    reported: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: reported.append(context))

    async def work() -> str:
        sink.emit(AttemptStarted("m", "p", "primary"))
        raise RuntimeError("deadline exceeded")

    events = forward(work(), sink)
    assert isinstance(await anext(events), AttemptStarted)
    await asyncio.sleep(0.01)  # the work fails meanwhile
    await events.aclose()
    del events
    gc.collect()
    await asyncio.sleep(0)
    assert reported == []
