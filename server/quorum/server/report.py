"""``quorum router report``: which task types could move to a cheaper tier, from real traffic.

Reads the decision log's ``shadow`` lines and prints one row per task type (and agent) and
tier move (the tier that answered → the cheaper tier shadowed): how often the cheaper model's
answer agreed with the one served, how much it would have saved, and a recommendation against
a target agreement. Each move is judged on its own lines only, so one that agrees well never
vouches for another of the same task.

A shadow call that gave no answer (``outcome: "failed"``: the cheaper model errored or timed
out) is no verdict on its quality: it is counted in the row's ``failed`` column and left out of
``n``, the agreement and the saving. Lines written before ``outcome`` existed are read too:
``agree: false`` with the reason ``"shadow call failed"`` was such a failure.

A file none of whose lines is a decision-log record (a JSON object of type ``decision``,
``feedback`` or ``shadow``) is refused, exit status 2: it is not a decision log. An empty log,
or one without shadow lines yet, is no error. Lines of a log that are not records (e.g. one cut
short by a crash, or JSON nested too deeply to read) are skipped and counted on stderr. A
shadow line whose ``primary_cost_usd`` or ``shadow_cost_usd`` is not a number >= 0 (US
dollars) or null is refused, exit status 2, naming the file, the line and the field: a
negative cost would report savings past 100%.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quorum.server.cli_args import finite_number, whole_at_least
from quorum.server.json_lines import loads_line

# How quorum.server.shadow marks a call that gave no answer; the second is the reason
# older versions wrote, with ``agree: false``, before there was an ``outcome``.
_FAILED = "failed"
_OLD_FAILED_REASON = "shadow call failed"
# The ``type`` of every line a decision log holds (quorum.server.decisions, .shadow).
RECORD_TYPES = frozenset({"decision", "feedback", "shadow"})


@dataclass(frozen=True, order=True)
class RowKey:
    """What a row of the report is about: a task (and agent) and one tier move."""

    task: str
    agent: str
    primary_tier: str
    shadow_tier: str

    @property
    def label(self) -> str:
        return self.task + (f" ({self.agent})" if self.agent else "")

    @property
    def moves(self) -> str:
        return f"{self.primary_tier} → {self.shadow_tier}"


@dataclass
class TaskStats:
    """Counts of one row: ``n`` compared answers (verdicts), ``failed`` calls apart."""

    n: int = 0
    agree: int = 0
    failed: int = 0
    primary_cost: float = 0.0
    shadow_cost: float = 0.0

    @property
    def agreement(self) -> float:
        return self.agree / self.n if self.n else 0.0

    @property
    def saving(self) -> float:
        return 1 - self.shadow_cost / self.primary_cost if self.primary_cost else 0.0


def failed(record: dict[str, Any]) -> bool:
    """Whether a shadow line records a call that gave no answer rather than a verdict."""
    outcome = record.get("outcome")
    if outcome is not None:
        return bool(outcome == _FAILED)
    return record.get("agree") is None or record.get("reason") == _OLD_FAILED_REASON


_COSTS = ("primary_cost_usd", "shadow_cost_usd")


def _cost(record: dict[str, Any], key: str) -> float:
    try:
        value = float(record.get(key) or 0.0)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int of 400 digits
        return 0.0
    return value if math.isfinite(value) and value >= 0 else 0.0


def cost_problem(record: dict[str, Any]) -> str | None:
    """What is wrong with a shadow line's costs, naming the field, or None: each must be
    absent, null or a number >= 0 (US dollars)."""
    for key in _COSTS:
        value = record.get(key)
        if value is None:
            continue
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int of hundreds of digits
                number = None
        if number is None or not math.isfinite(number) or number < 0:
            return f"{key} must be a number >= 0 (US dollars) or null, not {_shown(value)}"
    return None


def _shown(value: object) -> str:
    """``value`` as JSON spells it, short, for an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"a {len(str(abs(value)))}-digit integer"
    try:
        return json.dumps(value)[:40]
    except (TypeError, ValueError):
        return repr(value)[:40]


def aggregate(records: Iterable[dict[str, Any]]) -> dict[RowKey, TaskStats]:
    """Shadow lines counted per (task, agent, answering tier, shadow tier)."""
    stats: dict[RowKey, TaskStats] = defaultdict(TaskStats)
    for r in records:
        if r.get("type") != "shadow":
            continue
        key = RowKey(
            str(r.get("task") or "?"),
            str(r.get("agent") or ""),
            str(r.get("primary_tier") or "?"),
            str(r.get("shadow_tier") or "?"),
        )
        s = stats[key]
        if failed(r):
            s.failed += 1
            continue
        s.n += 1
        s.agree += r.get("agree") is True
        s.primary_cost += _cost(r, "primary_cost_usd")
        s.shadow_cost += _cost(r, "shadow_cost_usd")
    return dict(stats)


class NotADecisionLog(Exception):
    """A file given to ``--log`` none of whose lines is a decision-log record."""


class BadRecord(Exception):
    """A decision-log record the report cannot count (a negative cost): the message names
    the file, the line and the field."""


class LogReader:
    """The decision-log records of files, in order, counting the lines that are not one.

    A record is a JSON object whose ``type`` is one a decision log holds (``decision``,
    ``feedback``, ``shadow``); blank lines are skipped. A file with lines but no record
    raises :class:`NotADecisionLog` once read; the lines of the others that are not
    records (e.g. one cut short by a crash) are counted in :attr:`skipped`, per file. A
    shadow record with a cost that is not a number >= 0 raises :class:`BadRecord`.
    """

    def __init__(self) -> None:
        self.skipped: dict[Path, int] = {}

    def records(self, paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
        for path in paths:
            found = other = 0
            # errors="replace": a binary file is lines that are not records, not a traceback
            with path.open(encoding="utf-8", errors="replace") as handle:
                for number, line in enumerate(handle, start=1):
                    line = line.strip()
                    if not line:
                        continue
                    record = _record(line)
                    if record is None:
                        other += 1
                        continue
                    problem = cost_problem(record) if record["type"] == "shadow" else None
                    if problem is not None:
                        raise BadRecord(f"{path}:{number}: {problem}")
                    found += 1
                    yield record
            if other and not found:
                lines = "its only line is not" if other == 1 else f"none of its {other} lines is"
                raise NotADecisionLog(
                    f"{path} is not a decision log: {lines} a JSON object of type "
                    "decision, feedback or shadow"
                )
            if other:
                self.skipped[path] = other


def _record(line: str) -> dict[str, Any] | None:
    """The decision-log record on ``line``, or None when it is not one."""
    if not line.startswith("{"):
        return None
    try:
        record = loads_line(line)
    except (ValueError, RecursionError):  # not JSON, or nested too deeply to read
        return None
    if not isinstance(record, dict) or record.get("type") not in RECORD_TYPES:
        return None
    return record


def rows(stats: dict[RowKey, TaskStats], target: float, min_samples: int) -> list[dict[str, Any]]:
    """The report's rows, most verdicts first; each move has its own verdict. A row of
    failed calls only has no agreement or saving (``None``)."""
    out = []
    for key, s in sorted(stats.items(), key=lambda kv: (-kv[1].n, -kv[1].failed, kv[0])):
        if s.n < min_samples:
            more = min_samples - s.n
            verdict = f"need {more} more sample{'' if more == 1 else 's'}"
        elif s.agreement >= target:
            verdict = f"move {key.moves}"
        else:
            verdict = "keep"
        out.append(
            {
                "task": key.label,
                "agent": key.agent,
                "primary_tier": key.primary_tier,
                "shadow_tier": key.shadow_tier,
                "tiers": key.moves,
                "n": s.n,
                "failed": s.failed,
                "agreement": round(s.agreement, 4) if s.n else None,
                "saving": round(s.saving, 4) if s.n else None,
                "verdict": verdict,
            }
        )
    return out


_fraction = finite_number(lambda v: 0.0 <= v <= 1.0, "an agreement rate in [0, 1]")
_count = whole_at_least(1)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="quorum router report", description=__doc__)
    parser.add_argument("--log", type=Path, nargs="+", required=True, help="decision log files")
    parser.add_argument(
        "--target", type=_fraction, default=0.95, help="agreement needed to move (default 0.95)"
    )
    parser.add_argument(
        "--min-samples",
        type=_count,
        default=30,
        help="verdicts (failed calls not counted) a row needs before it is judged (default 30)",
    )
    parser.add_argument("--json", action="store_true")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed what is wrong (or the help)
        return exc.code if isinstance(exc.code, int) else 2
    reader = LogReader()
    try:
        stats = aggregate(reader.records(args.log))
    except OSError as exc:
        print(f"quorum router report: {exc}", file=sys.stderr)
        return 1
    except (NotADecisionLog, BadRecord) as exc:
        print(f"quorum router report: {exc}", file=sys.stderr)
        return 2
    for path, count in reader.skipped.items():
        what = "line that is not a record" if count == 1 else "lines that are not records"
        print(f"quorum router report: {path}: skipped {count} {what}", file=sys.stderr)
    report = rows(stats, args.target, args.min_samples)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if not report:
        print("no shadow evaluations in the log yet (set shadow.sample_rate in config)")
        return 0
    print(
        f"{'task':<28} {'tiers':<20} {'n':>6} {'failed':>6} {'agreement':>10} {'saving':>8}  "
        "verdict"
    )
    for r in report:
        agreement = "-" if r["agreement"] is None else f"{r['agreement']:.1%}"
        saving = "-" if r["saving"] is None else f"{r['saving']:.1%}"
        print(
            f"{r['task']:<28} {r['tiers']:<20} {r['n']:>6} {r['failed']:>6} "
            f"{agreement:>10} {saving:>8}  {r['verdict']}"
        )
    return 0
