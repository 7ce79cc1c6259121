"""K-fold cross-validation of the learned router on the training files: the quoted figures.

Each outer fold trains a complete router (features, models, and its own inner calibration folds)
on the other folds' rows only, then evaluates it on the held-out fold with the same code as
``quorum router eval``. Rows sharing an id (a prompt listed under two MMLU subjects) stay in one
fold. Printed per source: the mean over folds of each figure, with its standard error across
folds (std / sqrt(k)).

    .venv/bin/python bench/learned_router_cv.py [--folds 5] [--seed 0] [--json] [--data FILE...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quorum.server.learned.data import default_data_dir, default_data_files, load_prices, load_rows
from quorum.server.learned.evaluation import evaluate, json_summary
from quorum.server.learned.training import TrainConfig, group_folds, train_router

FIGURES = (
    "strong_share_at_95",
    "cost_saved_at_95",
    "strong_share_at_80",
    "strong_share_at_50",
    "apgr",
    "cascade_strong_share_at_95",
    "cascade_strong_share_at_50",
    "cascade_cost_saved_at_95",
    "score_at_half_cost",
    "cost_fraction",
    "score_at_calibrated",
)


def _calibrated(entry: dict[str, Any]) -> dict[str, float]:
    cal = entry.get("calibrated") or {}
    out = {}
    if "quality_fraction_of_strong" in cal:
        out["calibrated_quality_fraction"] = cal["quality_fraction_of_strong"]
        out["calibrated_strong_share"] = cal["strong_share"]
    return out


def run(files: Sequence[Path], folds: int, seed: int) -> dict[str, dict[str, Any]]:
    """Per source: figure -> (mean over folds, standard error, per-fold values)."""
    rows = load_rows(files)
    prices = load_prices(default_data_dir() / "prices.json")
    assignment = group_folds([f"{r.source}\n{r.id}" for r in rows], folds, seed)
    per_source: dict[str, dict[str, list[float]]] = {}
    for fold in range(folds):
        started = time.perf_counter()
        train = [r for r, f in zip(rows, assignment, strict=True) if f != fold]
        test = [r for r, f in zip(rows, assignment, strict=True) if f == fold]
        router, _ = train_router(train, prices, TrainConfig(seed=seed))
        summary = json_summary(evaluate(router, test, prices, rounds=0))
        for source, entry in summary.items():
            values = {k: entry[k] for k in FIGURES if entry.get(k) is not None}
            values |= _calibrated(entry)
            values["n"] = entry["n"]
            bucket = per_source.setdefault(source, {})
            for k, v in values.items():
                bucket.setdefault(k, []).append(float(v))
        elapsed = time.perf_counter() - started
        print(f"fold {fold + 1}/{folds} done in {elapsed:.0f}s", file=sys.stderr, flush=True)
    out: dict[str, dict[str, Any]] = {}
    for source, bucket in per_source.items():
        out[source] = {}
        for k, vals in bucket.items():
            arr = np.asarray(vals)
            se = float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else float("nan")
            out[source][k] = {"mean": float(arr.mean()), "se": se, "folds": vals}
    return out


def main() -> None:
    """Run the cross-validation and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    files = list(args.data) if args.data else default_data_files()
    result = run(files, args.folds, args.seed)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    for source, figures in result.items():
        n = int(sum(figures["n"]["folds"]))
        print(f"\n[{source}] {args.folds}-fold CV, {n} rows")
        for k, v in figures.items():
            if k != "n":
                print(f"  {k:32s} {v['mean']:.3f} ± {v['se']:.3f}")


if __name__ == "__main__":
    main()
