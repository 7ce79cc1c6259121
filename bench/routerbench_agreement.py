"""How far a cascade that reads the cheap answers could go on RouterBench: an in-sample bound.

    .venv/bin/python bench/routerbench_agreement.py [--data FILE]

Each policy asks a set of 2-3 cheap voters (or 4 of the task's six best cheap models) and
keeps the plurality answer when at least ``need`` voters share it, else pays the premium
model too. Answers are compared by their first standalone option letter (A-E); a task
whose answers carry none (MBPP's code) can only use one model. The voters are paid on every
prompt. Per task the best policy is chosen *on the same rows it is scored on*, so the
figures are optimistic bounds: the best fixed choice per task within half the premium's
cost, and the best mix of choices (the convex hull) at exactly half.
"""

from __future__ import annotations

import argparse
import itertools
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from quorum.server.learned.data import RoutingRow, default_data_dir, load_rows

PREMIUM = "gpt-4-1106-preview"
_LETTER = re.compile(r"\b([A-E])\b")


class Policy(NamedTuple):
    name: str
    score: float  # summed over the task's rows
    cost: float  # summed, USD


def _letter(response: str | None) -> str | None:
    found = _LETTER.search(response or "")
    return found.group(1) if found else None


def _cascade(rows: Sequence[RoutingRow], voters: tuple[str, ...], need: int) -> Policy:
    score = cost = 0.0
    for row in rows:
        results = row.results
        cost += sum(results[m].cost_usd or 0.0 for m in voters)
        answers = [_letter(results[m].response) for m in voters]
        top = Counter(a for a in answers if a).most_common(1)
        if top and top[0][1] >= need:
            first = next(m for m, a in zip(voters, answers, strict=True) if a == top[0][0])
            score += results[first].score
        else:
            score += results[PREMIUM].score
            cost += results[PREMIUM].cost_usd or 0.0
    short = "+".join(m.split("/")[-1] for m in voters)
    return Policy(f"{short}, GPT-4 unless {need} agree", score, cost)


def task_policies(rows: Sequence[RoutingRow], models: Sequence[str]) -> list[Policy]:
    """The task's Pareto front of single models and voter cascades."""
    singles = [
        Policy(
            m,
            sum(r.results[m].score for r in rows),
            sum(r.results[m].cost_usd or 0.0 for r in rows),
        )
        for m in models
    ]
    policies = list(singles)
    if sum(1 for r in rows if _letter(r.results[PREMIUM].response)) >= 0.9 * len(rows):
        cheap = [p.name for p in sorted(singles, key=lambda p: -p.score) if p.name != PREMIUM]
        for k in (2, 3, 4):
            for voters in itertools.combinations(cheap if k < 4 else cheap[:6], k):
                policies.extend(_cascade(rows, voters, need) for need in range(2, k + 1))
    front: list[Policy] = []
    for p in sorted(policies, key=lambda p: (p.cost, -p.score)):
        if not front or p.score > front[-1].score:
            front.append(p)
    return front


def _hull_at(fronts: Sequence[list[Policy]], budget: float) -> float:
    """The best summed score of per-task mixes of policies within ``budget`` (a greedy walk
    up each front's convex hull, steepest step first)."""
    steps: list[tuple[float, float, float]] = []  # (gain per dollar, d score, d cost)
    score = cost = 0.0
    for front in fronts:
        hull = [front[0]]
        for p in front[1:]:
            while len(hull) >= 2:
                a, b = hull[-2], hull[-1]
                if (b.score - a.score) * (p.cost - a.cost) <= (p.score - a.score) * (
                    b.cost - a.cost
                ):
                    hull.pop()
                else:
                    break
            hull.append(p)
        score, cost = score + hull[0].score, cost + hull[0].cost
        for a, b in itertools.pairwise(hull):
            steps.append(
                ((b.score - a.score) / (b.cost - a.cost), b.score - a.score, b.cost - a.cost)
            )
    for _, d_score, d_cost in sorted(steps, reverse=True):
        if cost + d_cost <= budget:
            score, cost = score + d_score, cost + d_cost
        else:
            return score + d_score * (budget - cost) / d_cost
    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=default_data_dir() / "routerbench_train.jsonl")
    args = parser.parse_args()
    rows = [r for r in load_rows([args.data]) if PREMIUM in r.results]
    # Every model that answered nearly every row, and the rows all of them answered.
    counts = Counter(m for r in rows for m in r.results)
    models = sorted(m for m, seen in counts.items() if seen >= 0.99 * len(rows))
    rows = [
        r for r in rows if all(m in r.results and r.results[m].cost_usd is not None for m in models)
    ]
    tasks = sorted({r.category for r in rows})
    fronts = [task_policies([r for r in rows if r.category == t], models) for t in tasks]
    n = len(rows)
    budget = 0.5 * sum(r.results[PREMIUM].cost_usd or 0.0 for r in rows)
    premium = sum(r.results[PREMIUM].score for r in rows) / n
    print(f"{n} rows, {len(models)} models; always {PREMIUM}: {premium:.4f}")
    best = max(
        (c for c in itertools.product(*fronts) if sum(p.cost for p in c) <= budget),
        key=lambda c: sum(p.score for p in c),
    )
    print(
        f"best fixed choice per task within half the cost: {sum(p.score for p in best) / n:.4f} "
        f"at {sum(p.cost for p in best) / budget / 2:.1%} of the cost"
    )
    for task, policy in zip(tasks, best, strict=True):
        print(f"  {task}: {policy.name}")
    print(f"best mix of choices per task at half the cost: {_hull_at(fronts, budget) / n:.4f}")


if __name__ == "__main__":
    main()
