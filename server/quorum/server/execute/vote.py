"""Vote counting for consensus: pure arithmetic over ballots.

A :class:`Ballot` is one candidate's normalised answer with its weight. Ballots with the
same normalised answer form a group whose weight is the sum of its members'. The vote
is *decided* early when the leading group's weight exceeds the runner-up's plus every
weight still outstanding — no late answer can then catch up, not even to a tie — and
the remaining calls can be cancelled.
"""

from __future__ import annotations

from collections.abc import Sequence

from quorum.server.domain import VoteGroup
from quorum.server.values import value_type

_EPS = 1e-9


@value_type
class Ballot:
    """One answer in the vote. ``rank`` orders models by capability for tie-breaks."""

    model: str
    normalized: str
    weight: float
    rank: tuple[int, float] = (0, 0.0)


def tally(ballots: Sequence[Ballot]) -> tuple[VoteGroup, ...]:
    """Groups of equal answers, in order of each answer's first appearance."""
    order: list[str] = []
    weights: dict[str, float] = {}
    models: dict[str, list[str]] = {}
    for ballot in ballots:
        if not ballot.normalized:
            continue
        if ballot.normalized not in weights:
            order.append(ballot.normalized)
            weights[ballot.normalized] = 0.0
            models[ballot.normalized] = []
        weights[ballot.normalized] += ballot.weight
        models[ballot.normalized].append(ballot.model)
    return tuple(VoteGroup(n, weights[n], tuple(models[n])) for n in order)


def leaders(groups: Sequence[VoteGroup]) -> list[int]:
    """Indexes of the groups sharing the highest weight."""
    if not groups:
        return []
    top = max(g.weight for g in groups)
    return [i for i, g in enumerate(groups) if g.weight >= top - _EPS]


def decided(groups: Sequence[VoteGroup], outstanding: float) -> int | None:
    """The winning group if no outstanding weight can change the result, else None.

    The leader wins early when ``leader > runner_up + outstanding``: even if every
    outstanding vote joined the runner-up, the leader would still be strictly ahead.
    """
    if not groups:
        return None
    ranked = sorted(range(len(groups)), key=lambda i: -groups[i].weight)
    lead = groups[ranked[0]].weight
    runner_up = groups[ranked[1]].weight if len(ranked) > 1 else 0.0
    if lead > runner_up + outstanding + _EPS:
        return ranked[0]
    return None


def most_capable_group(
    groups: Sequence[VoteGroup], tied: Sequence[int], ballots: Sequence[Ballot]
) -> int:
    """Among ``tied`` groups, the one holding the most capable model's answer."""
    rank = {b.model: b.rank for b in ballots}

    def best(index: int) -> tuple[int, float]:
        return max(rank.get(m, (0, 0.0)) for m in groups[index].models)

    return max(tied, key=best)


def agreement(groups: Sequence[VoteGroup], winner: int, received_weight: float) -> float:
    """Winning weight over the total weight of answers received, in [0, 1]."""
    if received_weight <= 0 or winner < 0:
        return 0.0
    return min(1.0, groups[winner].weight / received_weight)


def min_deciding_weight(weights: Sequence[float]) -> int:
    """How many of ``weights`` (cheapest first as given) must agree to decide early.

    The smallest ``k`` such that the first ``k`` weights together exceed the rest: the
    cheapest path of a majority vote, used for the plan's minimum cost.
    """
    total = sum(weights)
    running = 0.0
    for k, weight in enumerate(weights, start=1):
        running += weight
        if running > total - running + _EPS:
            return k
    return len(weights)
