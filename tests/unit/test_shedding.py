"""CPU-based shedding: the busy signal and the share of requests it refuses."""

from __future__ import annotations

import random
import threading
import time

import pytest

from quorum.server.shedding import BusyMeter, LoadShedder


def test_busy_meter_tells_a_spinning_thread_from_a_sleeping_one() -> None:
    results: dict[str, float] = {}

    def measure(name: str, work: bool) -> None:
        meter = BusyMeter()
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            if not work:
                time.sleep(0.01)
        results[name] = meter.sample()

    threads = [
        threading.Thread(target=measure, args=("spin", True)),
        threading.Thread(target=measure, args=("sleep", False)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Runnable time counts, whether on a CPU or waiting for one: a spinning thread is
    # busy even when the two share a core with other work.
    assert results["spin"] > 0.8
    assert results["sleep"] < 0.3


def test_share_grows_while_saturated_and_decays_to_zero_after() -> None:
    shedder = LoadShedder(0.95, max_share=0.9)
    shares = []
    for _ in range(30):
        shedder.update(0.99)
        shares.append(shedder.share)
    assert shares == sorted(shares)
    assert 0.8 < shares[-1] <= 0.9
    shedder.update(0.96)  # still at the threshold: keeps shedding
    assert shedder.share > shares[-1]
    for _ in range(30):
        shedder.update(0.5)
    assert shedder.share == 0.0


def test_below_the_threshold_nothing_is_shed() -> None:
    shedder = LoadShedder(0.97, rng=random.Random(1))
    for _ in range(10):
        shedder.update(0.9)
    assert shedder.share == 0.0


@pytest.mark.parametrize("share", [0.25, 0.75])
async def test_shed_refuses_about_the_share(share: float) -> None:
    shedder = LoadShedder(0.97, interval_s=60, rng=random.Random(7))
    shedder.share = share
    try:
        refused = sum(shedder.shed() for _ in range(4000))
    finally:
        await shedder.close()
    assert refused / 4000 == pytest.approx(share, abs=0.03)
