"""Shedding when calls queue up before the server takes them: refuse a share of new
requests while the measured queueing delay stays above a target.

In-flight limits (:mod:`quorum.server.service.admission`) bound memory, but they cannot see a
saturated CPU: ``grpc.aio`` takes new RPCs from gRPC core between turns of the event
loop, so when requests arrive faster than one process serves them the backlog grows
*in gRPC core*, before any Python code runs, with only a handful of calls in flight.
Every caller then waits out that backlog, up to its deadline.

So the server measures that wait directly. It listens on one more, private address (an
abstract Unix socket named after the process) and every ``interval_s`` sends itself a
``Route`` call there marked with a per-process secret in its metadata (every
``calm_interval_s`` while the delay is under a quarter of the target). gRPC core keeps
one queue per method, so the probe waits in line with every other ``Route`` call; the
gateway recognises it as soon as the server takes it and answers at once without
parsing or routing anything, so its round trip is the queueing delay a caller would see
now (plus well under a millisecond of work). A probe still unanswered counts with its
age so far, so a growing backlog is seen while it grows. The delay that counts is the
*least* of the last ``window`` readings (as in CoDel): a burst that one probe waits
behind is not a standing queue, a delay every recent probe saw is. While that delay
stays at or above ``target_s`` the share of new RouteService calls refused grows towards
``max_share``, faster the longer the delay; below it the share decays, faster the
shorter the delay, to zero. A refused call is answered before its request is parsed (see
:mod:`quorum.server.service.gateway`).

A closed loop of callers — each waiting for its answer before sending the next — cannot
build a backlog longer than its own size, so a saturated CPU with, say, 64 callers
queues for a few tens of milliseconds and nothing is shed; callers that keep sending
regardless (open loop) build it without limit, and those are the ones shed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import time
from collections import deque
from collections.abc import Sequence
from itertools import count

import grpc
import structlog

log = structlog.get_logger("quorum.shedding")

_PROBES = count()
PROBE_KEY = "quorum-queue-probe"
ROUTE_METHOD = "/quorum.route.v1.RouteService/Route"


def probe_address() -> str:
    """A private address for this process's delay probe (a Linux abstract socket)."""
    return f"unix-abstract:quorum-probe-{os.getpid()}-{next(_PROBES)}"


class LoadShedder:
    """The share of new requests to refuse, steered by the measured queueing delay."""

    def __init__(
        self,
        target_s: float = 0.1,
        *,
        interval_s: float = 0.05,
        calm_interval_s: float = 0.25,
        window: int = 3,
        max_share: float = 0.95,
        rng: random.Random | None = None,
    ) -> None:
        self.target_s = target_s
        self.interval_s = interval_s
        self.calm_interval_s = calm_interval_s
        self.max_share = max_share
        self.share = 0.0
        self.delay_s = 0.0  # the standing delay: the least of the recent readings
        self.last_s = 0.0  # the latest reading
        self._recent: deque[float] = deque(maxlen=window)
        self._random = (rng or random.Random()).random
        self._task: asyncio.Task[None] | None = None
        self._pending: asyncio.Future[object] | None = None  # the probe call in flight
        self._token = secrets.token_hex(16)

    def is_probe(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        """Whether a call with this metadata is this shedder's own probe."""
        if metadata:
            for key, value in metadata:
                if key == PROBE_KEY:
                    return value == self._token
        return False

    def shed(self) -> bool:
        """Whether to refuse the request arriving now."""
        return self.share > 0.0 and self._random() < self.share

    def update(self, delay_s: float) -> None:
        """Take one queueing-delay reading and adjust the share."""
        self.last_s = delay_s
        self._recent.append(delay_s)
        standing = self.delay_s = min(self._recent)
        before = self.share
        ratio = standing / self.target_s
        if ratio >= 1.0:
            # At the target a tenth of the way to max_share per reading; at five
            # times the target, half of it.
            self.share += (self.max_share - self.share) * min(0.5, 0.1 * ratio)
        else:
            # Idle: down by a tenth per reading; just under the target: barely.
            self.share *= 0.9 + 0.1 * ratio
            if self.share < 0.01:
                self.share = 0.0
        if (before == 0.0) != (self.share == 0.0):
            log.warning(
                "load_shedding" if self.share else "load_shedding_stopped",
                queue_delay_ms=round(standing * 1000, 1),
                share=round(self.share, 3),
            )

    def start(self, address: str) -> None:
        """Probe the server listening on ``address`` from now on (on the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._probe(address))

    async def _probe(self, address: str) -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            try:
                await self._probe_on(channel)
            finally:
                # Stopped (the server drains): the call in flight is cancelled and awaited
                # here, before its channel closes, so its failure is never left for asyncio
                # to print as an exception nobody retrieved.
                pending, self._pending = self._pending, None
                if pending is not None:
                    pending.cancel()
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await pending

    async def _probe_on(self, channel: grpc.aio.Channel) -> None:
        route = channel.unary_unary(ROUTE_METHOD, None, None)
        metadata = ((PROBE_KEY, self._token),)
        started = answered = 0.0

        def on_answer(done: asyncio.Future[object]) -> None:
            nonlocal answered
            answered = time.monotonic()
            if not done.cancelled():
                done.exception()  # retrieved: an error is only a late answer

        while True:
            await asyncio.sleep(self.interval_s)
            pending = self._pending
            if pending is not None and not pending.done():
                # Still queued: the backlog is at least this old.
                self.update(time.monotonic() - started)
                continue
            if pending is not None:
                self._pending = None
                self.update(answered - started)  # an error is only a late answer: its time counts
            calm = self.share == 0.0 and self.last_s < self.target_s / 4
            if calm and time.monotonic() - started < self.calm_interval_s:
                continue  # a probe costs a round trip: fewer while nothing queues
            started = time.monotonic()
            self._pending = asyncio.ensure_future(route(b"", timeout=30, metadata=metadata))
            self._pending.add_done_callback(on_answer)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
