"""Counter and histogram families that cost a dict update to record.

``prometheus_client``'s own metrics take a lock and check their state on every
increment; a histogram observation walks its buckets and takes two more. On the request
path that adds up to a tenth of Quorum's own CPU per request. Here a family is a dict
from label values to plain floats (a histogram: to a list of per-bucket counts and a
sum), written only on the server's event loop thread and turned into metric families
when Prometheus scrapes (:meth:`Tallies.collect`, run in the metrics server's thread).

A scrape copies each dict first, so a sample written meanwhile is simply seen by the
next scrape; a histogram read during a write may count an observation in its bucket
before its sum — off by one observation for one scrape, never lost.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

Labels = tuple[str, ...]


class CounterTally:
    """A counter family: ``inc(labels, amount)``."""

    __slots__ = ("doc", "label_names", "name", "values")

    def __init__(self, name: str, doc: str, label_names: Sequence[str]) -> None:
        self.name = name
        self.doc = doc
        self.label_names = tuple(label_names)
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: counters only go up, not by {amount}")
        values = self.values
        values[labels] = values.get(labels, 0.0) + amount

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.doc, labels=self.label_names)
        for labels, value in list(self.values.items()):
            family.add_metric(labels, value)
        return family


class HistogramTally:
    """A histogram family: ``observe(labels, value)`` with fixed bucket bounds."""

    __slots__ = ("bounds", "doc", "label_names", "name", "series")

    def __init__(
        self, name: str, doc: str, label_names: Sequence[str], bounds: Sequence[float]
    ) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"{name}: bucket bounds must increase: {bounds}")
        self.name = name
        self.doc = doc
        self.label_names = tuple(label_names)
        self.bounds = tuple(float(b) for b in bounds)
        # Per label values: a count per bucket (the last one past every bound), then
        # the sum of the observations.
        self.series: dict[Labels, list[float]] = {}

    def touch(self, labels: Labels) -> None:
        """Make ``labels`` show (with zero counts) before anything is observed."""
        if labels not in self.series:
            self.series[labels] = [0.0] * (len(self.bounds) + 2)

    def observe(self, labels: Labels, value: float) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        series[bisect_left(self.bounds, value)] += 1.0
        series[-1] += value

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.label_names)
        edges = [*(str(floatToGoString(b)) for b in self.bounds), "+Inf"]  # type: ignore[no-untyped-call]
        for labels, series in list(self.series.items()):
            counts = series[:-1]
            running = 0.0
            buckets: list[tuple[str, float]] = []
            for edge, count in zip(edges, counts, strict=True):
                running += count
                buckets.append((edge, running))
            family.add_metric(labels, buckets, series[-1])
        return family


class Tallies(Collector):
    """The families of one registry, collected together at scrape time."""

    def __init__(self) -> None:
        self._families: list[CounterTally | HistogramTally] = []

    def counter(self, name: str, doc: str, label_names: Sequence[str]) -> CounterTally:
        tally = CounterTally(name, doc, label_names)
        self._families.append(tally)
        return tally

    def histogram(
        self, name: str, doc: str, label_names: Sequence[str], bounds: Sequence[float]
    ) -> HistogramTally:
        tally = HistogramTally(name, doc, label_names, bounds)
        self._families.append(tally)
        return tally

    def collect(self) -> Iterator[Metric]:
        for tally in self._families:
            yield tally.family()

    def describe(self) -> Iterator[Metric]:
        # Registration asks for names only; an empty family of each is enough.
        for tally in self._families:
            if isinstance(tally, CounterTally):
                yield CounterMetricFamily(tally.name, tally.doc, labels=tally.label_names)
            else:
                yield HistogramMetricFamily(tally.name, tally.doc, labels=tally.label_names)
