"""The queue probe stops cleanly: a probe call that failed or is still in flight when the
server drains is settled by ``close``, never left for asyncio to print as a traceback."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

from quorum.server.service.shedding import LoadShedder, probe_address


@asynccontextmanager
async def _asyncio_reports() -> AsyncIterator[list[dict[str, Any]]]:
    """What asyncio reports meanwhile ("Task exception was never retrieved", ...)."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    reports: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reports.append(context))
    try:
        yield reports
        gc.collect()  # a dropped task reports when it is collected
    finally:
        loop.set_exception_handler(previous)


# A drain closes the probe's port: the probe call in flight fails while the probe loop
# sleeps, then the shedder is closed and the process exits. Run in a process of its own, so
# that what asyncio prints as the loop and its tasks go is seen as the server's output is.
_FAILED_PROBE_THEN_CLOSE = """
import asyncio, gc, os, sys
from quorum.server.service.shedding import LoadShedder

async def until(condition):
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    sys.exit("condition never held")

async def main():
    shedder = LoadShedder(0.1, interval_s=0.001, calm_interval_s=0.0)
    shedder.start(f"unix-abstract:quorum-test-nobody-{os.getpid()}")  # UNAVAILABLE at once
    await until(lambda: shedder._pending is not None)
    shedder.interval_s = 3600.0  # the probe loop's next sleep outlasts this script
    # Failed, and not yet read by the probe loop: a drain closing now used to drop it.
    await until(lambda: shedder._pending is not None and shedder._pending.done())
    await shedder.close()
    assert shedder._pending is None

asyncio.run(main())
gc.collect()
print("closed")
"""


def test_a_failed_probe_the_loop_has_not_read_yet_is_settled_by_close() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FAILED_PROBE_THEN_CLOSE],
        env={**os.environ, "GRPC_VERBOSITY": "NONE"},  # gRPC core's own lines are not ours
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "closed\n"), done.stderr
    assert done.stderr == ""  # not "Task exception was never retrieved ... AioRpcError"


async def test_a_probe_still_in_flight_is_cancelled_and_awaited_by_close() -> None:
    entered = asyncio.Event()

    async def never_answers(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        entered.set()
        await asyncio.Event().wait()
        return b""

    handler = grpc.method_handlers_generic_handler(
        "quorum.route.v1.RouteService",
        {"Route": grpc.unary_unary_rpc_method_handler(never_answers)},
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    address = probe_address()
    assert server.add_insecure_port(address)
    await server.start()
    try:
        async with _asyncio_reports() as reports:
            shedder = LoadShedder(0.1, interval_s=0.001, calm_interval_s=0.0)
            shedder.start(address)
            await asyncio.wait_for(entered.wait(), 10)
            pending = shedder._pending
            assert pending is not None and not pending.done()
            await shedder.close()
            assert pending.cancelled() and shedder._pending is None
        assert reports == []
    finally:
        await server.stop(None)
