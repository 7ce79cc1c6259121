"""The budget guard and budget windows: pure functions, tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from quorum.server.budget.guard import budget_guard
from quorum.server.budget.ledger import (
    GLOBAL,
    Budgets,
    Counter,
    CounterState,
    MemoryBudgetStore,
    Period,
    exhausted,
    to_micros,
    window,
)
from quorum.server.config import BudgetLimits, BudgetsConfig
from quorum.server.domain import Hints, Priority, Strategy
from quorum.server.errors import ResourceExhausted


def reading(used: float, *, limit: float = 10.0, overdraft: float = 0.0, spent: float | None = None,
            soft: float = 0.85) -> CounterState:  # fmt: skip
    counter = Counter(
        key="k",
        scope="acme",
        period=Period.DAY,
        limit=to_micros(limit),
        overdraft=to_micros(overdraft),
        soft_ratio=soft,
        resets_in_s=3600.0,
    )
    spent_usd = used if spent is None else spent
    return CounterState(counter, to_micros(spent_usd), to_micros(used - spent_usd))


HINTS = Hints(strategy=Strategy.CONSENSUS_MAJORITY, tier="premium", model="frontier")


def test_below_the_soft_threshold_nothing_changes() -> None:
    outcome = budget_guard(HINTS, [reading(8.0)], cheapest_tier="cheap", retry_after_s=1)
    assert outcome.hints is HINTS and not outcome.notes and not outcome.forbid_consensus


def test_above_the_soft_threshold_a_non_critical_request_is_downgraded() -> None:
    outcome = budget_guard(HINTS, [reading(8.8)], cheapest_tier="cheap", retry_after_s=1)
    h = outcome.hints
    assert (h.priority, h.tier, h.model, h.strategy) == (
        Priority.COST,
        "cheap",
        "",
        Strategy.SINGLE,
    )
    assert outcome.forbid_consensus
    (note,) = outcome.notes
    assert "tenant acme daily budget of $10.00 is 88% used" in note
    assert "tier cheap, no consensus" in note


def test_a_critical_request_is_not_downgraded() -> None:
    critical = Hints(critical=True, tier="premium")
    outcome = budget_guard(critical, [reading(9.5)], cheapest_tier="cheap", retry_after_s=1)
    assert outcome.hints is critical and not outcome.forbid_consensus


@pytest.mark.parametrize(
    ("spent", "reserved", "retry_after"),
    [(10.0, 0.0, 3600.0), (9.0, 1.0, 1.0)],
    ids=["spent: retry when the window resets", "reserved in flight: retry shortly"],
)
def test_at_the_hard_limit_the_request_is_refused(
    spent: float, reserved: float, retry_after: float
) -> None:
    with pytest.raises(ResourceExhausted) as info:
        budget_guard(
            Hints(), [reading(spent + reserved, spent=spent)], cheapest_tier="c", retry_after_s=1
        )
    err = info.value
    assert err.reason == "BUDGET_EXHAUSTED"
    assert err.retry_after_s == retry_after
    assert err.metadata == {"scope": "acme", "period": "day", "limit_usd": "10.000000"}


def test_a_critical_request_may_use_the_overdraft_and_no_more() -> None:
    critical = Hints(critical=True)
    outcome = budget_guard(
        critical, [reading(10.5, overdraft=1.0)], cheapest_tier="c", retry_after_s=1
    )
    assert "overdraft" in outcome.notes[0]
    with pytest.raises(ResourceExhausted):
        budget_guard(critical, [reading(11.0, overdraft=1.0)], cheapest_tier="c", retry_after_s=1)
    with pytest.raises(ResourceExhausted):
        budget_guard(Hints(), [reading(10.5, overdraft=1.0)], cheapest_tier="c", retry_after_s=1)


def test_windows_are_utc_days_and_months() -> None:
    now = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    assert window(Period.DAY, now) == ("2026-12-31", 3600.0)
    assert window(Period.MONTH, now) == ("2026-12", 3600.0)
    assert window(Period.MONTH, datetime(2026, 2, 10, tzinfo=UTC))[0] == "2026-02"


def test_counters_cover_the_tenant_and_global_scopes_that_have_limits() -> None:
    config = BudgetsConfig.model_validate({"global": {"monthly_usd": 100}, "soft_limit_ratio": 0.8})
    budgets = Budgets(
        config, MemoryBudgetStore(), clock=lambda: datetime(2026, 5, 4, 12, tzinfo=UTC)
    )
    counters = budgets.counters("acme", BudgetLimits(daily_usd=5, soft_limit_ratio=0.9))
    assert [(c.scope, c.period, c.limit, c.soft_ratio) for c in counters] == [
        ("acme", Period.DAY, 5_000_000, 0.9),
        (GLOBAL, Period.MONTH, 100_000_000, 0.8),
    ]
    assert counters[0].key == "{quorum:budget}:acme:day:2026-05-04"


def test_micro_dollars_round_up_what_may_be_spent() -> None:
    assert to_micros(0.0000011, up=True) == 2
    assert to_micros(0.000001, up=True) == 1
    assert to_micros(0.0000014) == 1


def test_a_refusal_says_whether_the_budget_is_used_up_or_this_request_is_too_dear() -> None:
    counter = reading(0.0, limit=0.001).counter
    dear = exhausted(counter, 8, 0, 8_881, critical=False, retry_after_s=1)
    assert dear.message == (
        "tenant acme daily budget of $0.001 has $0.000992 left ($0.000008 spent, "
        "$0.00 reserved by requests in flight); this request may cost up to $0.008881"
    )
    spent = exhausted(counter, 1_000, 0, 5, critical=False, retry_after_s=1)
    assert spent.message.startswith("tenant acme daily budget of $0.001 is used up: $0.001 spent")
    assert spent.retry_after_s == 3600.0 and dear.retry_after_s == 3600.0
