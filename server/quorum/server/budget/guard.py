"""The budget guard: a pure function of the request's hints and the budgets' readings.

Applied before planning, so the planner stays untouched:

* Below every soft threshold nothing changes.
* Above a soft threshold (``budgets.soft_limit_ratio``, 85% by default) a non-critical
  request is downgraded: cost priority, the cheapest tier the tenant has, no forced
  model, and no consensus (a consensus the caller asked for becomes single; one the
  planner would pick on its own is replaced after planning).
* At a hard limit the request is refused with RESOURCE_EXHAUSTED — unless it is
  critical and the scope allows an overdraft, which it may then use.

A reading is what is spent plus what requests in flight have reserved. The atomic
reservation after planning is what finally enforces a limit; this guard only decides
early with the numbers it has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from quorum.server.budget.ledger import CounterState, describe, exhausted, usd
from quorum.server.domain import Hints, Priority, Strategy
from quorum.server.values import value_type

CONSENSUS = frozenset({Strategy.CONSENSUS_MAJORITY, Strategy.CONSENSUS_JUDGE})


@value_type
class GuardOutcome:
    """The hints to plan with and what the guard changed, for ``RouteResult.guards``."""

    hints: Hints
    notes: tuple[str, ...] = ()
    forbid_consensus: bool = False


def budget_guard(
    hints: Hints,
    readings: Sequence[CounterState],
    *,
    cheapest_tier: str,
    retry_after_s: float,
) -> GuardOutcome:
    """Downgrade above a soft threshold, refuse at a hard limit (see the module doc)."""
    notes: list[str] = []
    soft_hit: CounterState | None = None
    for reading in readings:
        counter = reading.counter
        if reading.used >= counter.limit:
            if hints.critical and reading.used < counter.limit + counter.overdraft:
                notes.append(
                    f"budget: {describe(counter)} is used up; critical request runs on the "
                    f"overdraft ({usd(counter.overdraft)})"
                )
                continue
            raise exhausted(
                counter,
                reading.spent,
                reading.reserved,
                0,
                critical=hints.critical,
                retry_after_s=retry_after_s,
            )
        if reading.ratio >= counter.soft_ratio and (
            soft_hit is None or reading.ratio > soft_hit.ratio
        ):
            soft_hit = reading
    if soft_hit is None or hints.critical:
        return GuardOutcome(hints, tuple(notes))
    counter = soft_hit.counter
    downgraded = dataclasses.replace(
        hints,
        priority=Priority.COST,
        tier=cheapest_tier,
        model="",
        strategy=Strategy.SINGLE if hints.strategy in CONSENSUS else hints.strategy,
    )
    notes.append(
        f"budget: {describe(counter)} is {soft_hit.ratio:.0%} used (soft limit "
        f"{counter.soft_ratio:.0%}): non-critical request sent to tier {cheapest_tier}, "
        "no consensus"
    )
    return GuardOutcome(downgraded, tuple(notes), forbid_consensus=True)
