"""The local view of a shared breaker: writes recorded compactly, Redis's view adopted
with local writes re-applied on top. No Redis here (see the integration tests)."""

from __future__ import annotations

from datetime import UTC, datetime

import pybreaker
import redis

from quorum.server.resilience.shared_state import LocalView, Remote, SharedBreakerState


def _view() -> LocalView:
    owner = SharedBreakerState(redis.Redis(port=1))  # never connected in these tests
    view = owner.storage("p")
    assert isinstance(view, LocalView)
    return view


def test_writes_are_recorded_compactly() -> None:
    view = _view()
    for _ in range(3):
        view.increment_counter()
    view.state = pybreaker.STATE_OPEN
    view.opened_at = datetime(2026, 1, 1, tzinfo=UTC)
    view.state = pybreaker.STATE_HALF_OPEN
    assert view.ops == [
        ("incr", 3),
        ("opened_at", 1767225600),
        ("state", pybreaker.STATE_HALF_OPEN),
    ]
    view.reset_counter()
    assert ("incr", 3) not in view.ops and ("reset", 0) in view.ops
    assert view.counter == 0


def test_reads_never_leave_the_process_and_resets_of_nothing_write_nothing() -> None:
    view = _view()
    assert view.state == pybreaker.STATE_CLOSED and view.counter == 0
    view.reset_counter()
    view.reset_success_counter()
    assert view.ops == []


def test_adopting_redis_keeps_local_writes_made_meanwhile() -> None:
    view = _view()
    view.increment_counter()
    view.adopt(
        Remote(state=pybreaker.STATE_CLOSED, fail_counter=4, success_counter=0, opened_at=None)
    )
    assert view.counter == 5  # Redis said 4 (from every replica) plus our pending one
    view.take_ops()
    view.adopt(
        Remote(state=pybreaker.STATE_OPEN, fail_counter=5, success_counter=0, opened_at=1767225600)
    )
    assert view.state == pybreaker.STATE_OPEN and view.counter == 5
    assert view.opened_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_a_precise_local_opening_is_kept_over_redis_whole_seconds() -> None:
    view = _view()
    precise = datetime(2026, 1, 1, 0, 0, 0, 700_000, tzinfo=UTC)
    view.opened_at = precise
    view.adopt(
        Remote(state=pybreaker.STATE_OPEN, fail_counter=0, success_counter=0, opened_at=1767225600)
    )
    assert view.opened_at == precise


def test_unsent_writes_are_restored_in_order() -> None:
    view = _view()
    view.increment_counter()
    sent = view.take_ops()
    view.increment_counter()
    view.state = pybreaker.STATE_OPEN
    view.restore_ops(sent)
    assert view.ops == [("incr", 2), ("state", pybreaker.STATE_OPEN)]


def test_quiet_writes_are_ignored() -> None:
    view = _view()
    owner = view._owner
    with owner.quiet_writes():
        view.increment_counter()
        view.state = pybreaker.STATE_OPEN
    assert view.ops == [] and view.counter == 0 and view.state == pybreaker.STATE_CLOSED
