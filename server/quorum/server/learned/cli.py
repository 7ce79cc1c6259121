"""``quorum router train`` and ``quorum router eval``: build the artifact, judge a router.

    quorum router train [--data FILE...] [--out DIR] [--quality-target 0.95]
    quorum router train [--data FILE...] --feedback DECISIONS.jsonl... --out DIR
    quorum router eval --data FILE.jsonl [--router DIR] [--json] [--plot OUT.png]

``--data`` reads routing data (every model's result on each prompt); ``--feedback`` reads decision
logs written with ``decisions.include_prompts`` and trains one more head, of source ``decisions``
(``--feedback-source``), from the feedback on them, calibrated model-based
(:func:`~.training.train_partial_head`). ``main(argv)`` returns the exit code: 0 on success, 2 for
bad input (bad arguments such as a quality target outside (0, 1] or fewer than 2 folds, missing or
malformed files — a decision log given to ``--data``, or to ``eval``, which needs full rows —, a
file that is not UTF-8, a malformed ``prices.json``, a decision log without prompts, a source
only one model answers, an artifact of another format version or a damaged one, an ``--out``
that cannot be written), with a one-line message naming it (only
:class:`~.data.DataError` and :class:`~.artifact.ArtifactError` are caught: the loaders turn what
they meet into those). ``eval --plot`` always writes a PNG (``.png`` appended to another name) and
prints the path written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from quorum.server.cli_args import finite_number, whole_at_least
from quorum.server.learned.data import (
    DataError,
    Price,
    RoutingRow,
    default_data_files,
    files_digest,
    load_prices,
    load_rows,
    split_by_source,
)

DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "default"


# A quality target: a fraction of the premium model's quality.
_fraction = finite_number(
    lambda v: 0.0 < v <= 1.0, "a fraction of the premium model's quality in (0, 1], e.g. 0.95"
)


def _parser() -> argparse.ArgumentParser:
    from quorum.server.learned.decision_log import DEFAULT_FEEDBACK_SOURCE

    parser = argparse.ArgumentParser(prog="quorum router", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the learned router and write its artifact")
    train.add_argument(
        "--data",
        nargs="+",
        type=Path,
        help="routing data JSONL files (default: the shared data, or none with --feedback)",
    )
    train.add_argument(
        "--feedback",
        nargs="+",
        type=Path,
        help="decision logs (decisions.include_prompts on) whose feedback trains one more head",
    )
    train.add_argument(
        "--feedback-source",
        default=DEFAULT_FEEDBACK_SOURCE,
        help=f"source name of the decision log's head (default {DEFAULT_FEEDBACK_SOURCE})",
    )
    train.add_argument(
        "--out",
        type=Path,
        help="artifact directory (default: the committed default artifact; required with "
        "--feedback)",
    )
    train.add_argument("--prices", type=Path, help="prices.json (default: beside the data)")
    train.add_argument(
        "--quality-target",
        type=_fraction,
        default=0.95,
        help="fraction of the premium model's quality to calibrate for (default 0.95)",
    )
    train.add_argument(
        "--folds",
        type=whole_at_least(2, " (calibration holds out one fold at a time)"),
        default=3,
        help="calibration folds, at least 2 and at most the distinct prompts of a source "
        "(default 3)",
    )
    train.add_argument("--seed", type=whole_at_least(0), default=0)
    ev = sub.add_parser("eval", help="evaluate a router on a JSONL file, per source")
    ev.add_argument("--data", nargs="+", type=Path, required=True, help="JSONL file(s)")
    ev.add_argument("--router", type=Path, default=DEFAULT_ARTIFACT, help="artifact directory")
    ev.add_argument("--prices", type=Path, help="prices.json (default: beside the data)")
    ev.add_argument("--json", action="store_true", help="print one JSON object keyed by source")
    ev.add_argument(
        "--plot",
        type=Path,
        help="write a PNG of the curves to this file (.png is appended to another name)",
    )
    ev.add_argument(
        "--bootstrap",
        type=whole_at_least(0, " (0: no SEs)"),
        default=200,
        help="bootstrap rounds for SEs (0: no SEs; default 200)",
    )
    parser.set_defaults(parsers={"train": train, "eval": ev})  # to report on each
    return parser


def _prices_path(explicit: Path | None, data: Sequence[Path]) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise DataError(
                f"--prices {explicit}: no such file"
                if not explicit.exists()
                else f"--prices {explicit}: not a file"
            )
        return explicit
    beside = data[0].parent / "prices.json" if data else None
    return beside if beside is not None and beside.is_file() else None


def _manifest_prices(manifest: Mapping[str, Any]) -> dict[str, Price]:
    from quorum.server.learned.artifact import ArtifactError

    raw = manifest.get("prices") or {}
    try:
        return {
            str(m): Price(float(v["input_per_mtok"]), float(v["output_per_mtok"]))
            for m, v in raw.items()
        }
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"manifest.json: malformed 'prices' ({exc!r})") from None


def _check_folds(rows: Sequence[RoutingRow], folds: int) -> None:
    """Every source needs at least ``folds`` distinct prompts, or some folds would be empty."""
    for source, source_rows in split_by_source(rows).items():
        distinct = len({r.id for r in source_rows})
        if distinct < folds:
            fix = f"use --folds {distinct} or fewer" if distinct >= 2 else "it needs 2 or more"
            raise DataError(
                f"--folds {folds}: source {source!r} has only {distinct} distinct prompt(s); {fix}"
            )


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot become the artifact directory, before any training."""
    if out.exists():
        if not out.is_dir():
            raise DataError(
                f"--out {out}: a file, not a directory (the artifact is a directory holding "
                "manifest.json and weights.npz)"
            )
        return
    parent = next(p for p in out.parents if p.exists())
    if not parent.is_dir():
        raise DataError(f"--out {out}: cannot create it, {parent} is a file")
    if parent == out.parent:  # try it: permissions alone do not tell (e.g. under /proc)
        try:
            out.mkdir()
            out.rmdir()
        except OSError as exc:
            raise DataError(f"--out {out}: cannot create it ({exc.strerror or exc})") from None
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"--out {out}: cannot create it, {parent} is not writable")


def _train(args: argparse.Namespace) -> int:
    from quorum.server.learned.artifact import save_router
    from quorum.server.learned.decision_log import load_feedback_rows
    from quorum.server.learned.training import MODEL_BASED, TrainConfig, train_router

    logs: list[Path] = list(args.feedback or [])
    if logs and args.out is None:
        raise DataError(
            "--feedback needs --out DIR: a router trained on a deployment's decision log is that "
            "deployment's, and the committed default artifact is trained on routing data only"
        )
    out: Path = args.out or DEFAULT_ARTIFACT
    _check_out(out)
    files = list(args.data) if args.data else ([] if logs else default_data_files())
    prices = load_prices(_prices_path(args.prices, files))
    rows = load_rows(files)
    partial: list[RoutingRow] = []
    feedback: dict[str, Any] = {}
    if logs:
        if any(r.source == args.feedback_source for r in rows):
            raise DataError(
                f"--feedback-source {args.feedback_source!r} is also a source of --data; "
                "choose another name"
            )
        partial, summary = load_feedback_rows(logs, args.feedback_source)
        print("\n".join(summary.lines()))
        feedback = {
            "files": [f.name for f in sorted(logs)],
            "sha256": files_digest(logs),
            "source": args.feedback_source,
            "calibration": MODEL_BASED,
            **summary.as_dict(),
        }
    if not rows and not partial:
        raise DataError(f"no training rows in {', '.join(str(f) for f in files)}")
    _check_folds([*rows, *partial], args.folds)
    cfg = TrainConfig(quality_target=args.quality_target, folds=args.folds, seed=args.seed)
    started = time.perf_counter()
    router, fitted = train_router(rows, prices, cfg, partial)
    training_data: dict[str, Any] = {
        "files": [f.name for f in sorted(files)],
        "sha256": files_digest(files),
        "rows": len(rows),
    }
    if feedback:
        training_data["feedback"] = feedback
    extra = {
        "training_data": training_data,
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "calibration": {s: f.calibration for s, f in fitted.items() if f.calibration},
        "prices": {
            m: {"input_per_mtok": p.input_per_mtok, "output_per_mtok": p.output_per_mtok}
            for m, p in prices.items()
        },
    }
    try:
        save_router(router, out, extra)
    except OSError as exc:
        raise DataError(f"--out {out}: cannot write the artifact ({exc.strerror or exc})") from None
    took = time.perf_counter() - started
    for source, head in router.heads.items():
        detail = (
            f"threshold {_threshold(head.threshold)}"
            if head.threshold is not None
            else f"lambda {head.lam:.4g}"
        )
        if head.cascade is not None:
            detail += f", cascade threshold {_threshold(head.cascade.threshold)}"
        if head.calibration is not None:
            detail += f", calibration {head.calibration}"
        print(f"{source}: {head.kind}, {len(head.models)} models, {detail}")
    print(f"wrote {out} in {took:.0f}s")
    return 0


def _threshold(value: float) -> str:
    if math.isinf(value):  # the cheap model alone meets the target
        return "none (never routes to the strong model)"
    return f"{value:.4f}"


def _eval(args: argparse.Namespace) -> int:
    from quorum.server.learned.artifact import load_router
    from quorum.server.learned.evaluation import evaluate, json_summary
    from quorum.server.learned.report import format_reports

    router = load_router(args.router)
    # prices of the data's folder (or --prices), falling back to those the router was trained with
    prices = _manifest_prices(router.manifest) | load_prices(_prices_path(args.prices, args.data))
    rows = load_rows(args.data)
    reports = evaluate(router, rows, prices, rounds=args.bootstrap)
    if not reports:
        print("no source of the data matches a head of the router", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(json_summary(reports), sort_keys=True))
    else:
        sys.stdout.write(format_reports(reports))
    if args.plot:
        from quorum.server.learned.plotting import plot_reports

        try:
            written = plot_reports(reports, args.plot)  # always a PNG: .png appended if need be
        except OSError as exc:
            raise DataError(f"--plot {args.plot}: cannot write ({exc.strerror or exc})") from None
        # with --json, stdout holds only the JSON object
        print(f"plot written to {written}", file=sys.stderr if args.json else sys.stdout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``quorum router ...`` with ``argv`` (without the program name)."""
    from quorum.server.learned.artifact import ArtifactError

    try:
        parser = _parser()
        args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
        if extra:  # reported against the subcommand, whose usage says what it takes
            args.parsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse has printed the usage and what is wrong (or --help)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "train":
            return _train(args)
        return _eval(args)
    except (DataError, ArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
