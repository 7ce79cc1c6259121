"""Budgets that hold under concurrency: reserve before calling, settle after.

Before any upstream call the router reserves the plan's estimated maximum cost against
every budget the request counts towards — its tenant's and the global one, per day and
per month (UTC windows). A reservation is refused when spent + reserved + this amount
would pass a limit, so concurrent requests cannot together overspend: what was admitted
fits, whatever the interleaving. After execution (also on failure or cancellation) the
reservation is settled: the reserved amount is released and the actual cost is added to
what was spent.

    Budgets ──► BudgetStore
                  ├── MemoryBudgetStore   one process (the default)
                  └── RedisBudgetStore    replicas share one budget: each step is a Lua
                                          script, so check-and-reserve is atomic

Money is counted in integer micro-dollars. Reservations are idempotent by id (the
tenant and request id) and a nonce: repeating a reserve or a settle changes nothing,
and a second request reusing an id that is still in flight is refused. A reservation
that is never settled (its replica died) is released after its hold time.

A settle the store does not take (Redis unreachable, or refusing writes) is owed, not
dropped: it is kept in a bounded backlog (:data:`MAX_OWED`) and retried with backoff until
the store takes it, in order. A late settle still counts what was spent, also after the
reservation was released, so only a replica that dies owing, or a backlog beyond its
bound, loses spend (logged ``budget_settle_dropped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import heapq
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from quorum.server.config import BudgetLimits, BudgetsConfig
from quorum.server.errors import RequestInFlight, ResourceExhausted
from quorum.server.values import value_type

log = structlog.get_logger("quorum.budget")

MICROS = 1_000_000
MAX_OWED = 10_000  # settles kept for a store that does not take them, then the oldest go
OWED_RETRY_S = (1.0, 30.0)  # the backoff of owed settles: first delay, longest delay
GLOBAL = "_global"
"""The scope name of the budget shared by every tenant."""


def to_micros(usd: float, *, up: bool = False) -> int:
    """USD as integer micro-dollars; ``up`` rounds up (for what may be spent)."""
    scaled = usd * MICROS
    return math.ceil(scaled - 1e-6) if up else round(scaled)


class Period(enum.Enum):
    DAY = "day"
    MONTH = "month"


def window(period: Period, now: datetime) -> tuple[str, float]:
    """The id of the UTC window ``now`` falls in and the seconds until it ends."""
    if period is Period.DAY:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
        return start.strftime("%Y-%m-%d"), (end - now).total_seconds()
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start.strftime("%Y-%m"), (end - now).total_seconds()


_KEEP_S = {Period.DAY: 2 * 86_400, Period.MONTH: 40 * 86_400}


@value_type
class Counter:
    """One budget a request counts towards, in the current window."""

    key: str
    scope: str
    period: Period
    limit: int
    overdraft: int
    soft_ratio: float
    resets_in_s: float

    @property
    def keep_s(self) -> int:
        return _KEEP_S[self.period]


@value_type
class CounterState:
    """A counter and what is spent and reserved on it now (micro-dollars)."""

    counter: Counter
    spent: int
    reserved: int

    @property
    def used(self) -> int:
        return self.spent + self.reserved

    @property
    def ratio(self) -> float:
        limit = self.counter.limit
        if limit <= 0:
            return math.inf if self.used > 0 else 1.0
        return self.used / limit


class ReserveStatus(enum.Enum):
    OK = "ok"
    REFUSED = "refused"
    DUPLICATE = "duplicate"


@value_type
class ReserveResult:
    status: ReserveStatus
    refused_index: int = -1
    spent: int = 0
    reserved: int = 0


class BudgetStore(Protocol):
    """Where counters and reservations live; every method is atomic."""

    async def read(self, keys: Sequence[str]) -> list[tuple[int, int]]:
        """(spent, reserved) of each key."""
        ...

    async def reserve(
        self,
        rid: str,
        nonce: str,
        amount: int,
        keys: Sequence[str],
        allowances: Sequence[int],
        keep_s: Sequence[int],
        hold_s: float,
    ) -> ReserveResult:
        """Reserve ``amount`` on every key if each stays within its allowance."""
        ...

    async def settle(self, rid: str, nonce: str, actual: int) -> bool:
        """Release reservation ``rid`` and add ``actual`` to what was spent; once."""
        ...

    async def close(self) -> None: ...


class BudgetStoreError(Exception):
    """The budget store could not be reached or answered nonsense."""


@dataclass(slots=True)
class _Reservation:
    nonce: str
    amount: int
    keys: tuple[str, ...]
    expires: float
    state: str = "reserved"


class MemoryBudgetStore:
    """Counters in this process: the default for one replica."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counters: dict[str, list[int]] = {}
        self._expires: dict[str, float] = {}
        self._reservations: dict[str, _Reservation] = {}
        self._holds: list[tuple[float, str, str]] = []  # heap of (expiry, id, nonce)

    def _sweep(self, now: float) -> None:
        """Release reservations held past their time; forget old settled ones."""
        while self._holds and self._holds[0][0] <= now:
            _, rid, nonce = heapq.heappop(self._holds)
            r = self._reservations.get(rid)
            if r is not None and r.nonce == nonce and r.state == "reserved":
                for key in r.keys:
                    self._counters[key][1] -= r.amount
                r.state = "expired"
        if len(self._reservations) > 10_000:
            for rid, r in list(self._reservations.items()):
                if r.state != "reserved" and r.expires + 86_400 <= now:
                    del self._reservations[rid]
        if len(self._expires) > 64:
            for key, until in list(self._expires.items()):
                if until <= now:
                    self._expires.pop(key)
                    self._counters.pop(key, None)

    async def read(self, keys: Sequence[str]) -> list[tuple[int, int]]:
        out = []
        for key in keys:
            spent, reserved = self._counters.get(key, (0, 0))
            out.append((spent, reserved))
        return out

    async def reserve(
        self,
        rid: str,
        nonce: str,
        amount: int,
        keys: Sequence[str],
        allowances: Sequence[int],
        keep_s: Sequence[int],
        hold_s: float,
    ) -> ReserveResult:
        now = self._clock()
        self._sweep(now)
        existing = self._reservations.get(rid)
        if existing is not None and existing.state == "reserved":
            if existing.nonce == nonce:
                return ReserveResult(ReserveStatus.OK)
            return ReserveResult(ReserveStatus.DUPLICATE)
        for i, (key, allowance) in enumerate(zip(keys, allowances, strict=True)):
            spent, reserved = self._counters.get(key, (0, 0))
            if spent + reserved + amount > allowance:
                return ReserveResult(ReserveStatus.REFUSED, i, spent, reserved)
        for key, keep in zip(keys, keep_s, strict=True):
            if key not in self._counters:
                self._counters[key] = [0, 0]
                self._expires[key] = now + keep
            self._counters[key][1] += amount
        self._reservations[rid] = _Reservation(nonce, amount, tuple(keys), now + hold_s)
        heapq.heappush(self._holds, (now + hold_s, rid, nonce))
        return ReserveResult(ReserveStatus.OK)

    async def settle(self, rid: str, nonce: str, actual: int) -> bool:
        r = self._reservations.get(rid)
        if r is None or r.nonce != nonce or r.state == "settled":
            return False
        for key in r.keys:
            counter = self._counters.setdefault(key, [0, 0])
            if r.state == "reserved":
                counter[1] -= r.amount
            counter[0] += actual
        r.state = "settled"
        return True

    async def close(self) -> None:
        return None


@dataclass(slots=True)
class Reservation:
    """A held reservation; settle it exactly once (further settles are no-ops)."""

    rid: str
    nonce: str
    amount: int
    counters: tuple[Counter, ...]
    settled: bool = False


class Budgets:
    """The budgets of the config over a store: readings for the guard, reserve, settle."""

    def __init__(
        self,
        config: BudgetsConfig,
        store: BudgetStore,
        *,
        key_prefix: str = "{quorum:budget}",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retry_after_s: float = 1.0,
    ) -> None:
        self.config = config
        self.store = store
        self._prefix = key_prefix
        self._clock = clock
        self._retry_after_s = retry_after_s
        self._owed: deque[tuple[Reservation, int]] = deque()
        self._repaying: asyncio.Task[None] | None = None
        self._closed = False
        # Retries run in the context the budgets were built in (a worker's log fields),
        # never in the request's that failed to settle.
        self._context = contextvars.copy_context()

    @staticmethod
    def limited(limits: BudgetLimits) -> bool:
        return limits.daily_usd is not None or limits.monthly_usd is not None

    def counters(self, tenant: str, limits: BudgetLimits) -> list[Counter]:
        """The counters a request of ``tenant`` counts towards, now."""
        now = self._clock()
        out: list[Counter] = []
        for scope, scope_limits in ((tenant, limits), (GLOBAL, self.config.all_tenants)):
            soft = scope_limits.soft_limit_ratio or self.config.soft_limit_ratio
            for period, usd in (
                (Period.DAY, scope_limits.daily_usd),
                (Period.MONTH, scope_limits.monthly_usd),
            ):
                if usd is None:
                    continue
                window_id, resets_in = window(period, now)
                out.append(
                    Counter(
                        key=f"{self._prefix}:{scope}:{period.value}:{window_id}",
                        scope=scope,
                        period=period,
                        limit=to_micros(usd),
                        overdraft=to_micros(scope_limits.overdraft_usd),
                        soft_ratio=soft,
                        resets_in_s=resets_in,
                    )
                )
        return out

    async def read(self, counters: Sequence[Counter]) -> list[CounterState]:
        """What is spent and reserved on each counter; [] when the store is down and
        ``store_failure`` is allow."""
        if not counters:
            return []
        try:
            values = await self.store.read([c.key for c in counters])
        except BudgetStoreError as exc:
            self._store_failed("read", exc)
            return []
        return [CounterState(c, s, r) for c, (s, r) in zip(counters, values, strict=True)]

    def _store_failed(self, op: str, exc: BaseException) -> None:
        log.error("budget_store_unavailable", op=op, error=str(exc))
        if self.config.store_failure == "deny":
            raise ResourceExhausted(
                "budget store unavailable; retry shortly",
                retry_after_s=self._retry_after_s,
                reason="BUDGET_STORE_UNAVAILABLE",
            ) from None

    async def reserve(
        self,
        tenant: str,
        request_id: str,
        counters: Sequence[Counter],
        amount_usd: float,
        *,
        critical: bool,
        hold_s: float,
    ) -> Reservation | None:
        """Reserve ``amount_usd`` on every counter or raise RESOURCE_EXHAUSTED.

        A critical request may go up to each counter's overdraft past its limit. None
        when there is nothing to count against (or the store is down and that is allowed).
        """
        if not counters:
            return None
        amount = to_micros(max(0.0, amount_usd), up=True)
        rid = f"{self._prefix}:res:{tenant}:{request_id}"
        nonce = uuid.uuid4().hex
        allowances = [c.limit + (c.overdraft if critical else 0) for c in counters]
        hold = min(hold_s, self.config.max_reservation_s)
        try:
            result = await self.store.reserve(
                rid, nonce, amount, [c.key for c in counters], allowances,
                [c.keep_s for c in counters], hold,
            )  # fmt: skip
        except BudgetStoreError as exc:
            self._store_failed("reserve", exc)
            return None
        if result.status is ReserveStatus.DUPLICATE:
            raise RequestInFlight(
                f"request {request_id} is already being served",
                retry_after_s=self._retry_after_s,
                metadata={"request_id": request_id},
            )
        if result.status is ReserveStatus.REFUSED:
            raise exhausted(
                counters[result.refused_index],
                result.spent,
                result.reserved,
                amount,
                critical=critical,
                retry_after_s=self._retry_after_s,
            )
        return Reservation(rid, nonce, amount, tuple(counters))

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Release the reservation and count ``actual_usd`` as spent (once). Tried three
        times at once; when the store still does not take it, it is owed (retried later)."""
        if reservation.settled:
            return
        reservation.settled = True
        actual = to_micros(max(0.0, actual_usd))
        for attempt in range(3):
            try:
                await self.store.settle(reservation.rid, reservation.nonce, actual)
                return
            except BudgetStoreError as exc:
                if attempt == 2:
                    self._owe(reservation, actual, exc)
                    return
                await asyncio.sleep(0.05 * (attempt + 1))

    @property
    def owed_usd(self) -> float:
        """What settles the store has not taken yet add up to."""
        return sum(actual for _, actual in self._owed) / MICROS

    def _owe(self, reservation: Reservation, actual: int, exc: BaseException) -> None:
        if self._closed:  # a settle still failing after close: nothing will retry it
            log.error(
                "budget_settle_dropped",
                reservation=reservation.rid,
                actual_usd=actual / MICROS,
                error=str(exc),
            )
            return
        log.error(
            "budget_settle_failed",
            reservation=reservation.rid,
            actual_usd=actual / MICROS,
            error=str(exc),
            owed=len(self._owed) + 1,
        )
        if len(self._owed) >= MAX_OWED:
            lost, amount = self._owed.popleft()
            log.error("budget_settle_dropped", reservation=lost.rid, actual_usd=amount / MICROS)
        self._owed.append((reservation, actual))
        if self._repaying is None or self._repaying.done():
            self._repaying = asyncio.get_running_loop().create_task(
                self._repay(), context=self._context.copy()
            )

    async def _repay(self) -> None:
        """Settle what is owed, oldest first, backing off while the store refuses."""
        delay = OWED_RETRY_S[0]
        while self._owed:
            await asyncio.sleep(delay)
            delay = await self._repay_once(delay)

    async def _repay_once(self, delay: float) -> float:
        """One pass over the backlog; the next delay (reset once the store takes one)."""
        while self._owed:
            entry = self._owed[0]
            reservation, actual = entry
            try:
                await self.store.settle(reservation.rid, reservation.nonce, actual)
            except BudgetStoreError:
                return min(delay * 2, OWED_RETRY_S[1])
            # By identity (deque.remove would compare with ==): while the store was
            # answering, a full backlog may have dropped this entry to make room, and the
            # oldest is then another, still owed.
            if self._owed and self._owed[0] is entry:
                self._owed.popleft()
            else:
                for index, owed in enumerate(self._owed):
                    if owed is entry:
                        del self._owed[index]
                        break
            log.info("budget_settle_repaid", reservation=reservation.rid, owed=len(self._owed))
        return OWED_RETRY_S[0]

    async def close(self) -> None:
        """Try what is owed once more, then close the store; what is still owed is lost
        (logged); a settle that fails after this is logged as dropped, not retried."""
        self._closed = True
        if self._repaying is not None:
            self._repaying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._repaying
        if self._owed:
            await self._repay_once(OWED_RETRY_S[0])
        if self._owed:
            log.error("budget_settle_dropped", owed=len(self._owed), actual_usd=self.owed_usd)
            self._owed.clear()
        await self.store.close()


def usd(micros: int) -> str:
    """Micro-dollars for people: cents from a dollar up, micro-dollars below."""
    value = micros / MICROS
    if value >= 1 or value == 0:
        return f"${value:,.2f}"
    return f"${value:.6f}".rstrip("0")  # to the micro-dollar, never in e-notation


def describe(counter: Counter) -> str:
    who = "global" if counter.scope == GLOBAL else f"tenant {counter.scope}"
    period = "daily" if counter.period is Period.DAY else "monthly"
    return f"{who} {period} budget of {usd(counter.limit)}"


def exhausted(
    counter: Counter,
    spent: int,
    reserved: int,
    amount: int,
    *,
    critical: bool,
    retry_after_s: float,
) -> ResourceExhausted:
    """The error for a refused reservation; retry when the window resets if it is spent,
    shortly if in-flight reservations fill it."""
    allowance = counter.limit + (counter.overdraft if critical else 0)
    spent_out = spent + max(amount, 1) > allowance  # in-flight ones cannot free it
    extra = " and its overdraft" if critical and counter.overdraft else ""
    account = f"{usd(spent)} spent, {usd(reserved)} reserved by requests in flight"
    left = allowance - spent - reserved
    if amount and left > 0:
        # Not used up: what is left is less than this request may cost.
        message = (
            f"{describe(counter)}{extra} has {usd(left)} left ({account}); "
            f"this request may cost up to {usd(amount)}"
        )
    else:
        needs = f", this request may cost up to {usd(amount)}" if amount else ""
        message = f"{describe(counter)}{extra} is used up: {account}{needs}"
    return ResourceExhausted(
        message,
        retry_after_s=counter.resets_in_s if spent_out else retry_after_s,
        reason="BUDGET_EXHAUSTED",
        metadata={
            "scope": counter.scope,
            "period": counter.period.value,
            "limit_usd": f"{counter.limit / MICROS:.6f}",
        },
    )
