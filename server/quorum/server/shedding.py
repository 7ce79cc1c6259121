"""Shedding when the CPU is the limit: refuse a share of new requests while the event
loop has no idle time left.

In-flight limits (:mod:`quorum.server.admission`) bound memory, but they cannot see a
saturated CPU: ``grpc.aio`` takes new RPCs from gRPC core between turns of the event
loop, so when requests arrive faster than one process can serve them the backlog grows
*in gRPC core*, before any Python code runs, while only a handful are in flight. Every
caller then waits out that backlog, up to its deadline.

The signal used here is whether the event loop thread ever waits for work. Linux
reports, per thread, the time it ran and the time it was runnable but waiting for a CPU
(``/proc/thread-self/schedstat``); their sum over the wall time is 1.0 when the thread
never sleeps in its poll — the loop always had something to do — even when other
processes leave it only part of a core. Every ``interval_s`` the :class:`LoadShedder`
reads that *busy* share; while it stays at or above ``busy_threshold`` the share of
new RouteService calls refused grows, and once the loop idles again it decays to zero.
A refused call is answered before its request is even parsed (see
:mod:`quorum.server.gateway`), so refusing is much cheaper than serving and the
backlog drains.

Where ``schedstat`` is missing (not Linux) the thread's CPU time stands in; it
cannot see time spent waiting for a CPU, so it only detects saturation when the
process has a core to itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

log = structlog.get_logger("quorum.shedding")


def build_shedder(threshold: float | None) -> LoadShedder | None:
    """The shedder for ``admission.shed_busy_threshold``; ``None`` turns shedding off."""
    return LoadShedder(threshold) if threshold is not None else None


class BusyMeter:
    """The share of wall time the calling thread was running or waiting to run."""

    def __init__(self, path: str | None = None) -> None:
        self._path = Path(path or f"/proc/self/task/{threading.get_native_id()}/schedstat")
        self._schedstat = self._path.exists()
        self._last = self._read()

    def _read(self) -> tuple[float, float]:
        wall = time.monotonic()
        if self._schedstat:
            try:
                run_ns, wait_ns, _ = self._path.read_text().split()
                return wall, (int(run_ns) + int(wait_ns)) / 1e9
            except (OSError, ValueError):
                self._schedstat = False
        return wall, time.thread_time()

    def sample(self) -> float:
        """Busy share since the previous sample (0..1)."""
        wall, busy = self._read()
        last_wall, last_busy = self._last
        self._last = (wall, busy)
        elapsed = wall - last_wall
        if elapsed <= 0:
            return 0.0
        return min(1.0, max(0.0, (busy - last_busy) / elapsed))


class LoadShedder:
    """The share of new requests to refuse, steered by how busy the event loop is.

    Each interval the share moves a tenth of the way towards ``max_share`` while the
    loop is saturated and shrinks by a fifth while it is not (to zero below 1%), so it
    settles around the share at which the loop just keeps up.
    """

    def __init__(
        self,
        busy_threshold: float = 0.97,
        *,
        interval_s: float = 0.05,
        max_share: float = 0.95,
        meter_factory: Callable[[], BusyMeter] = BusyMeter,
        rng: random.Random | None = None,
    ) -> None:
        self.busy_threshold = busy_threshold
        self.interval_s = interval_s
        self.max_share = max_share
        self.share = 0.0
        self.busy = 0.0
        self._meter_factory = meter_factory
        self._random = (rng or random.Random()).random
        self._task: asyncio.Task[None] | None = None

    def shed(self) -> bool:
        """Whether to refuse the request arriving now (starts the monitor on first use)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._monitor())
        return self.share > 0.0 and self._random() < self.share

    def update(self, busy: float) -> None:
        """Take one busy sample (0..1) and adjust the share."""
        self.busy = busy
        before = self.share
        if busy >= self.busy_threshold:
            self.share += (self.max_share - self.share) * 0.1
        else:
            self.share *= 0.8
            if self.share < 0.01:
                self.share = 0.0
        if (before == 0.0) != (self.share == 0.0):
            log.warning(
                "load_shedding" if self.share else "load_shedding_stopped",
                busy=round(busy, 3),
                share=round(self.share, 3),
            )

    async def _monitor(self) -> None:
        meter = self._meter_factory()  # on the loop's own thread
        while True:
            await asyncio.sleep(self.interval_s)
            self.update(meter.sample())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
