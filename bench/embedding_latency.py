"""Decision time of the local embedding classifier (all-MiniLM-L6-v2 in ONNX Runtime).

Builds prompts of ``--tokens`` word pieces (200 by default) from real prompts of the routing
data, and times, one prompt at a time after a warm-up:

- ``encode``: the forward pass of a prompt never seen before (the cache is bypassed);
- ``match``: what a request pays on the event loop — ``SemanticRoutes.match`` awaits the
  encoder in a worker thread, then votes among the nearest labelled examples (here 20 real
  prompts of each data source, so the routes are the sources);
- ``match x2``: the same with two prompts embedded at once (both cores busy);
- ``cached``: a prompt embedded before (the LRU cache answers).

It also prints the start-up cost of embedding the labelled examples, in texts per second.

    .venv/bin/python -m bench.embedding_latency [--prompts 200] [--tokens 200]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import numpy as np

from quorum.server.classify.embedding import SemanticRoutes
from quorum.server.embeddings import MiniLMEncoder
from quorum.server.learned.data import default_data_files, load_rows, split_by_source


def _line(what: str, samples: list[float]) -> str:
    arr = np.asarray(samples) * 1000.0
    p50, p99, worst = np.percentile(arr, 50), np.percentile(arr, 99), arr.max()
    return f"{what:10s} n={len(arr):4d}  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  max {worst:6.1f} ms"


def _prompts(encoder: MiniLMEncoder, texts: list[str], count: int, tokens: int) -> list[str]:
    """``count`` distinct prompts of exactly ``tokens`` word pieces ([CLS] and [SEP] included)."""
    rng = random.Random(0)
    tokenizer = encoder.tokenizer
    out: list[str] = []
    while len(out) < count:
        ids: list[int] = []
        while len(ids) < tokens:
            ids += tokenizer.encode(rng.choice(texts), add_special_tokens=False).ids
        text = tokenizer.decode(ids[: tokens - 2])
        # Decoding can merge pieces; trim words until the prompt is no longer than asked.
        while len(tokenizer.encode(text).ids) > tokens:
            text = text.rsplit(" ", 1)[0]
        out.append(text)
    return out


async def _timed(
    call: Callable[[str], Awaitable[object]], texts: list[str], parallel: int
) -> list[float]:
    """Seconds per call, ``parallel`` calls at a time."""
    times: list[float] = []

    async def one(text: str) -> None:
        t0 = time.perf_counter()
        await call(text)
        times.append(time.perf_counter() - t0)

    for start in range(0, len(texts), parallel):
        await asyncio.gather(*(one(t) for t in texts[start : start + parallel]))
    return times


async def _run(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    encoder = MiniLMEncoder()
    print(f"load: {(time.perf_counter() - started) * 1000:.0f} ms")
    by_source = split_by_source(load_rows(default_data_files()))
    rng = random.Random(1)
    examples = {
        source: [r.prompt[:300] for r in rng.sample(rows, min(20, len(rows)))]
        for source, rows in by_source.items()
    }
    started = time.perf_counter()
    routes = SemanticRoutes(encoder, examples)
    spent = time.perf_counter() - started
    n_examples = sum(len(v) for v in examples.values())
    print(f"start-up: {n_examples} examples in {spent:.2f} s ({n_examples / spent:.0f} texts/s)")

    texts = [r.prompt for rows in by_source.values() for r in rows]
    prompts = _prompts(encoder, texts, 4 * args.prompts + 20, args.tokens)
    lengths = [len(encoder.tokenizer.encode(p).ids) for p in prompts]
    print(f"prompts: {len(prompts)}, {min(lengths)}-{max(lengths)} tokens each")
    warm, prompts = prompts[:20], prompts[20:]
    for p in warm:
        await routes.match(p)
    n = args.prompts
    encode: list[float] = []
    for text in prompts[:n]:
        t0 = time.perf_counter()
        encoder.encode([text])
        encode.append(time.perf_counter() - t0)
    print(_line("encode", encode))
    print(_line("match", await _timed(routes.match, prompts[n : 2 * n], 1)))
    print(_line("match x2", await _timed(routes.match, prompts[2 * n : 4 * n], 2)))
    print(_line("cached", await _timed(routes.match, prompts[:n], 1)))


def main() -> None:
    """Time the encoder and the semantic routes; print p50/p99 in milliseconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=200)
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
