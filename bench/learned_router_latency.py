"""Decision time of the learned router: p50/p99 of one ``score`` call, per source and overall.

Loads the default artifact (or ``--router DIR``), takes up to ``--per-source`` real prompts of
each source from the routing data, and times ``router.score(prompt, source)`` one call at a time
after a warm-up. Cascade verification (``verify``) is timed on rows carrying cheap answers.

The prompts come from the training files, whose frequent words the artifact pre-computes
(its warm words); ``--cold`` empties those caches after loading, so that every word is new
to the scorer when it is first seen (the case of prompts unlike anything in training).

    .venv/bin/python bench/learned_router_latency.py [--router DIR] [--per-source 500] [--cold]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

from quorum.server.learned import DEFAULT_ARTIFACT, LearnedRouter
from quorum.server.learned.data import default_data_files, load_rows, split_by_source


def _line(label: str, what: str, samples: list[float]) -> str:
    arr = np.asarray(samples) * 1000.0
    p50, p99, worst = np.percentile(arr, 50), np.percentile(arr, 99), arr.max()
    head = f"{label:16s} {what:6s} n={len(arr):4d}"
    return f"{head}  p50 {p50:.2f} ms  p99 {p99:.2f} ms  max {worst:.2f} ms"


def main() -> None:
    """Time the router and print p50/p99 in milliseconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router", type=Path, default=DEFAULT_ARTIFACT)
    parser.add_argument("--per-source", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cold", action="store_true", help="forget the warm words after loading")
    args = parser.parse_args()

    started = time.perf_counter()
    router = LearnedRouter.load(args.router)
    print(f"load: {(time.perf_counter() - started) * 1000:.0f} ms")
    if args.cold:
        for head in router.heads.values():
            for block in head.space.blocks:
                block.forget_words()
    rng = random.Random(args.seed)
    by_source = split_by_source(load_rows(default_data_files()))
    overall: list[float] = []
    for source, rows in by_source.items():
        if source not in router.heads:
            continue
        sample = rng.sample(rows, min(args.per_source, len(rows)))
        for row in sample[:20]:  # warm-up
            router.score(row.prompt, source)
        times: list[float] = []
        for row in sample:
            t0 = time.perf_counter()
            router.score(row.prompt, source)
            times.append(time.perf_counter() - t0)
        overall += times
        print(_line(source, "score", times))
        head = router.head(source)
        if head.cascade is not None:
            cheap = head.models[0]
            answered = [r for r in sample if r.results[cheap].response]
            vtimes: list[float] = []
            for row in answered:
                response = row.results[cheap].response or ""
                t0 = time.perf_counter()
                router.verify(row.prompt, response, source)
                vtimes.append(time.perf_counter() - t0)
            if vtimes:
                print(_line(source, "verify", vtimes))
    print(_line("all", "score", overall))


if __name__ == "__main__":
    main()
