"""``quorum router report``: which task types could move to a cheaper tier, from real traffic.

Reads the decision log's ``shadow`` lines and prints, per task type (and agent), how
often the cheaper model's answer agreed with the one served, how much it would have
saved, and a recommendation against a target agreement.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TaskStats:
    n: int = 0
    agree: int = 0
    primary_cost: float = 0.0
    shadow_cost: float = 0.0
    moves: str = ""

    @property
    def agreement(self) -> float:
        return self.agree / self.n if self.n else 0.0


def aggregate(records: Iterable[dict[str, Any]]) -> dict[str, TaskStats]:
    stats: dict[str, TaskStats] = defaultdict(TaskStats)
    for r in records:
        if r.get("type") != "shadow":
            continue
        key = r["task"] + (f" ({r['agent']})" if r.get("agent") else "")
        s = stats[key]
        s.n += 1
        s.agree += bool(r.get("agree"))
        s.primary_cost += float(r.get("primary_cost_usd", 0.0))
        s.shadow_cost += float(r.get("shadow_cost_usd", 0.0))
        s.moves = f"{r.get('primary_tier', '?')} → {r.get('shadow_tier', '?')}"
    return dict(stats)


def _read(paths: Sequence[Path]) -> Iterable[dict[str, Any]]:
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="quorum router report", description=__doc__)
    parser.add_argument("--log", type=Path, nargs="+", required=True, help="decision log files")
    parser.add_argument("--target", type=float, default=0.95, help="agreement needed to move")
    parser.add_argument("--min-samples", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        stats = aggregate(_read(args.log))
    except OSError as exc:
        print(f"quorum router report: {exc}", file=sys.stderr)
        return 1
    rows = []
    for task, s in sorted(stats.items(), key=lambda kv: -kv[1].n):
        saving = 1 - s.shadow_cost / s.primary_cost if s.primary_cost else 0.0
        if s.n < args.min_samples:
            verdict = f"need {args.min_samples - s.n} more samples"
        elif s.agreement >= args.target:
            verdict = f"move {s.moves}"
        else:
            verdict = "keep"
        rows.append(
            {
                "task": task,
                "n": s.n,
                "agreement": round(s.agreement, 4),
                "saving": round(saving, 4),
                "tiers": s.moves,
                "verdict": verdict,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no shadow evaluations in the log yet (set shadow.sample_rate in config)")
        return 0
    print(f"{'task':<28} {'n':>6} {'agreement':>10} {'saving':>8}  verdict")
    for r in rows:
        print(
            f"{r['task']:<28} {r['n']:>6} {r['agreement']:>10.1%} {r['saving']:>8.1%}  "
            f"{r['verdict']}"
        )
    return 0
