"""Shedding on queueing delay: the share of requests refused follows the measured delay."""

from __future__ import annotations

import random

import pytest

from quorum.server.service.shedding import LoadShedder, probe_address


def test_share_grows_while_calls_queue_and_decays_to_zero_after() -> None:
    shedder = LoadShedder(0.1, max_share=0.9)
    shares = []
    for _ in range(30):
        shedder.update(0.25)
        shares.append(shedder.share)
    assert shares == sorted(shares)
    assert 0.8 < shares[-1] <= 0.9
    shedder.update(0.1)  # at the target: still shedding
    assert shedder.share > shares[-1]
    for _ in range(60):
        shedder.update(0.002)
    assert shedder.share == 0.0


def test_a_longer_delay_moves_the_share_faster() -> None:
    mild, severe = LoadShedder(0.1), LoadShedder(0.1)
    mild.update(0.12)
    severe.update(0.6)
    assert 0 < mild.share < severe.share
    mild.share = severe.share = 0.5
    mild.update(0.09)  # just under the target: hardly decays
    severe.update(0.0)  # idle: decays fastest
    assert severe.share < mild.share < 0.5


def test_a_burst_one_probe_waits_behind_is_not_a_standing_queue() -> None:
    shedder = LoadShedder(0.1)
    for delay in (0.004, 0.35, 0.006, 0.003, 0.4, 0.005):  # two bursts, no backlog
        shedder.update(delay)
        assert shedder.share == 0.0
    for _ in range(3):  # every recent probe waited: a standing queue
        shedder.update(0.3)
    assert shedder.share > 0.0
    assert shedder.delay_s == pytest.approx(0.3)


def test_below_the_target_nothing_is_shed() -> None:
    shedder = LoadShedder(0.1)
    for _ in range(10):
        shedder.update(0.03)  # a closed loop of callers on a busy server
    assert shedder.share == 0.0
    assert not any(shedder.shed() for _ in range(1000))


@pytest.mark.parametrize("share", [0.25, 0.75])
def test_shed_refuses_about_the_share(share: float) -> None:
    shedder = LoadShedder(0.1, rng=random.Random(7))
    shedder.share = share
    refused = sum(shedder.shed() for _ in range(4000))
    assert refused / 4000 == pytest.approx(share, abs=0.03)


def test_probe_addresses_are_private_and_distinct() -> None:
    first, second = probe_address(), probe_address()
    assert first.startswith("unix-abstract:") and first != second
