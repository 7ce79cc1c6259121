"""The ``--workers`` supervisor's verdict on a worker that exited: stop all, or restart.

Start-up is judged by the worker's ready report, never by how long it took: these are
the rules, without processes or clocks (``tests/integration/test_workers.py`` runs them).
"""

from __future__ import annotations

import pytest

from quorum.server.workers import (
    MAX_RESTART_PAUSE_S,
    RESTART_PAUSE_S,
    STABLE_S,
    Verdict,
    judge_exit,
    restart_pause,
)


@pytest.mark.parametrize(("exit_code", "command_exit"), [(2, 2), (1, 1), (-9, 1), (0, 1)])
def test_a_first_worker_that_never_got_ready_stops_the_command(
    exit_code: int, command_exit: int
) -> None:
    # 2: the worker refused to start (a bad key, a port it cannot bind), as serve without
    # --workers exits; any other death before it served (a crash, a kill): 1.
    verdict = judge_exit(exit_code, served_s=None, restarted=False, quick_deaths=0)
    assert verdict.fatal_code == command_exit


def test_start_up_is_not_judged_by_the_clock() -> None:
    # However long the worker took to get there, dying before its ready report is a
    # failed start, and dying after it is a crash to restart.
    slow_failure = judge_exit(2, served_s=None, restarted=False, quick_deaths=0)
    assert slow_failure.fatal_code == 2
    quick_crash = judge_exit(-9, served_s=0.0, restarted=False, quick_deaths=0)
    assert quick_crash.fatal_code is None


def test_the_restart_pause_doubles_for_each_death_in_a_row_and_resets_after_serving() -> None:
    quick = 0
    pauses = []
    for _ in range(8):  # each replacement serves a moment, then crashes again
        verdict = judge_exit(-9, served_s=0.5, restarted=True, quick_deaths=quick)
        assert verdict.fatal_code is None
        pauses.append(verdict.pause_s)
        quick = verdict.quick_deaths
    assert pauses == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    # One that served STABLE_S before it died starts a new count: the shortest pause.
    calm = judge_exit(-9, served_s=STABLE_S, restarted=True, quick_deaths=quick)
    assert calm == Verdict(None, 0, RESTART_PAUSE_S)


def test_a_replacement_that_cannot_start_is_retried_with_a_growing_pause() -> None:
    # The others keep serving: a replacement's failed start (a port taken meanwhile, an
    # endpoint down) is retried, not fatal, and counts as a quick death.
    verdict = judge_exit(2, served_s=None, restarted=True, quick_deaths=3)
    assert verdict == Verdict(None, 4, restart_pause(4))
    assert verdict.pause_s == 8.0


def test_the_pause_is_bounded_however_long_the_crash_loop() -> None:
    assert restart_pause(0) == RESTART_PAUSE_S
    assert restart_pause(10_000) == MAX_RESTART_PAUSE_S  # no overflow
