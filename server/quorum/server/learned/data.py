"""Loading routing data: one JSON object a line, each a prompt and its models' results.

A line looks like::

    {"id": "…", "source": "routellm-mmlu", "category": "college_physics", "prompt": "…",
     "results": {"gpt-4-1106-preview": {"score": 1.0, "response": "…", "cost_usd": null},
                 "mistralai/Mixtral-8x7B-Instruct-v0.1": {"score": 0.0}}}

Any number of models may answer a row. ``source`` and ``prompt`` are strings, a ``score`` is a
number from 0 to 1 and a ``cost_usd`` a number >= 0 or null; a line that breaks this is refused
with a :class:`DataError` naming the file, line and field. A model's cost for a row is its
``cost_usd`` where the row carries one; otherwise it is priced from token counts with the list
prices of ``prices.json`` (:func:`estimate_tokens` says how tokens are counted,
:func:`output_tokens` how many a model is assumed to have written). Rows are grouped by
``source`` into :class:`SourceTable`, the matrix form that training and evaluation use.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from quorum.server.json_lines import loads_line

DATA_ENV = "QUORUM_ROUTING_DATA"
"""Environment variable that overrides where the routing data lives."""

DEFAULT_OUTPUT_TOKENS = 256
"""Output tokens assumed for a model whose row carries neither a response nor a cost.

Used only for free-form prompts (not one-letter multiple choice); every model of a row gets the
same count, so it scales a row's costs but never reorders the models of that row.
"""

_MULTIPLE_CHOICE = re.compile(r"(?:^|\n)\s*\(?[A-D][).:]\s.*(?:\n|\\n)", re.DOTALL)
_ANSWER_CUE = re.compile(r"answer\s*:?\s*(?:\\n|\n)?\s*['\"\]]*\s*$", re.IGNORECASE)

FloatArray = npt.NDArray[np.float64]


DECISION_LOG_TYPES = frozenset({"decision", "feedback", "shadow"})
"""``type`` of the decision log's lines (``quorum.server.decisions``): refused here, with a
reason; ``train --feedback`` reads them (:mod:`.decision_log`)."""


class DataError(ValueError):
    """A routing data file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class Price:
    """List price of a model in US dollars per million input and output tokens."""

    input_per_mtok: float
    output_per_mtok: float


@dataclass(frozen=True)
class ModelResult:
    """One model's result on one prompt: a 0..1 score, and its response and cost if known."""

    score: float
    response: str | None = None
    cost_usd: float | None = None


@dataclass(frozen=True)
class RoutingRow:
    """One prompt with the results of every model that answered it."""

    id: str
    source: str
    category: str
    prompt: str
    results: Mapping[str, ModelResult]


def repo_root() -> Path:
    """The repository root: three levels above the ``quorum`` package directory."""
    # .../server/quorum/server/learned/data.py -> parents[4] is the repository root.
    return Path(__file__).resolve().parents[4]


def default_data_dir() -> Path:
    """``$QUORUM_ROUTING_DATA`` if set, else ``<repo root>/../shared/data/routing``."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return repo_root().parent / "shared" / "data" / "routing"


def default_data_files(data_dir: Path | None = None) -> list[Path]:
    """Every ``*.jsonl`` file of the data directory, sorted by name."""
    folder = data_dir or default_data_dir()
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise DataError(f"no *.jsonl routing data in {folder} (set {DATA_ENV} to the data dir)")
    return files


def finite_float(value: object) -> float | None:
    """``value`` as a float if it is a finite number (JSON ``true``/``false`` are not, nor
    an integer too large for a float, such as one of 400 digits)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int past float's range (about 1.8e308)
        return None
    return number if math.isfinite(number) else None


def _shown(value: object) -> str:
    """``value`` as JSON spells it (``null``, ``true``, ``NaN``), for error messages; an
    integer too long to show is named by its length."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        try:
            return f"a {len(str(abs(value)))}-digit integer"
        except ValueError:  # too long for str() (not from JSON, which makes a LongInteger)
            return "an integer too long to show"
    try:
        return json.dumps(value)[:40]
    except (TypeError, ValueError):
        return repr(value)[:40]


def _parse_result(name: str, raw: object, where: str) -> ModelResult:
    if not isinstance(raw, dict) or "score" not in raw:
        raise DataError(f"{where}: results.{name} needs a numeric 'score' from 0 to 1")
    score = finite_float(raw["score"])
    if score is None or not 0.0 <= score <= 1.0:
        raise DataError(
            f"{where}: results.{name} needs a numeric 'score' from 0 to 1, "
            f"not {_shown(raw['score'])}"
        )
    response = raw.get("response")
    cost_raw = raw.get("cost_usd")
    cost = finite_float(cost_raw)
    if cost_raw is not None and (cost is None or cost < 0):
        raise DataError(
            f"{where}: results.{name}.cost_usd must be a number >= 0 (US dollars) or null, "
            f"not {_shown(cost_raw)}"
        )
    return ModelResult(
        score=score,
        response=response if isinstance(response, str) else None,
        cost_usd=cost,
    )


def json_object(line: str, where: str, what: str) -> dict[str, Any]:
    """One JSON-lines line as an object; ``where`` names it and ``what`` the kind of line
    expected in errors."""
    try:
        raw = loads_line(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not JSON ({exc.msg})") from exc
    except RecursionError:
        raise DataError(f"{where}: not {what} (JSON nested too deeply to read)") from None
    if not isinstance(raw, dict):
        raise DataError(f"{where}: {what} must be a JSON object")
    return raw


def parse_row(line: str, where: str) -> RoutingRow:
    """Parse one JSON line into a :class:`RoutingRow`; ``where`` names it in errors."""
    raw = json_object(line, where, "a row")
    if raw.get("type") in DECISION_LOG_TYPES and "request_id" in raw and "results" not in raw:
        raise DataError(
            f"{where}: a decision log line ({raw['type']!r}), not routing data. The decision "
            "log is not a training format for --data: it has one model's answer per request, "
            "and --data (train and eval) reads one JSON object a line with 'source', 'prompt' "
            "and 'results' (every model's score on the prompt). Evaluation needs such full "
            "rows; to train from the log's feedback instead, pass it to "
            "'quorum router train --feedback LOG --out DIR'; see docs/learned-router.md"
        )
    for key in ("source", "prompt", "results"):
        if key not in raw:
            raise DataError(f"{where}: missing '{key}'")
    results = raw["results"]
    if not isinstance(results, dict) or not results:
        raise DataError(f"{where}: 'results' must be a non-empty object")
    prompt, source = raw["prompt"], raw["source"]
    if not isinstance(prompt, str):
        raise DataError(f"{where}: 'prompt' must be a string, not {_shown(prompt)}")
    if not isinstance(source, str) or not source:
        raise DataError(f"{where}: 'source' must be a non-empty string, not {_shown(source)}")
    row_id = raw.get("id") or hashlib.sha256(f"{source}\n{prompt}".encode()).hexdigest()[:16]
    return RoutingRow(
        id=str(row_id),
        source=source,
        category=str(raw.get("category") or ""),
        prompt=prompt,
        results={str(k): _parse_result(str(k), v, where) for k, v in results.items()},
    )


_BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte order mark: accepted at the very start of a file, nowhere else."""


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line of a UTF-8 text file (a byte order mark at the
    start of the file is dropped).

    Raises :class:`DataError` naming the file (and the line) when it is missing, unreadable or
    not UTF-8 text.
    """
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if number == 1 and raw.startswith(_BOM):  # written by some editors
                    raw = raw[len(_BOM) :]
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(
                        f"{path.name}:{number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                        f"column {exc.start + 1}); the file must be UTF-8 JSON lines"
                    ) from None
                yield number, text
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def load_rows(paths: Iterable[Path | str]) -> list[RoutingRow]:
    """Every row of the given JSONL files, in file order; blank lines are skipped."""
    rows: list[RoutingRow] = []
    for path in paths:
        p = Path(path)
        for number, line in read_lines(p):
            if line.strip():
                rows.append(parse_row(line, f"{p.name}:{number}"))
    return rows


def load_prices(path: Path | None = None) -> dict[str, Price]:
    """List prices from ``prices.json`` (empty if the file is absent).

    The file is one JSON object: model name → ``{"input_per_mtok": …, "output_per_mtok": …}``
    (US dollars per million tokens). Raises :class:`DataError` naming the file when it is not
    that.
    """
    p = path or default_data_dir() / "prices.json"
    if not p.is_file():
        return {}
    try:
        raw = loads_line(p.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise DataError(f"{p}: not UTF-8 text; prices must be a UTF-8 JSON object") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}:{exc.lineno}: not JSON ({exc.msg})") from None
    except RecursionError:
        raise DataError(f"{p}: JSON nested too deeply to read; prices are a flat object") from None
    if not isinstance(raw, dict):
        raise DataError(f"{p}: prices must be a JSON object of model -> price")
    return {str(name): _parse_price(str(name), v, p) for name, v in raw.items()}


def _parse_price(name: str, raw: object, path: Path) -> Price:
    values = []
    for key in ("input_per_mtok", "output_per_mtok"):
        number = finite_float(raw.get(key) if isinstance(raw, dict) else None)
        if number is None or number < 0:
            raise DataError(
                f"{path}: {name!r} needs '{key}', a number >= 0 (US dollars per million tokens)"
            )
        values.append(number)
    return Price(values[0], values[1])


def files_digest(paths: Sequence[Path | str]) -> str:
    """SHA-256 over the bytes of the given files in name order: identifies training data."""
    digest = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        digest.update(p.name.encode())
        digest.update(p.read_bytes())
    return digest.hexdigest()


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` under the common rule of thumb: one token per four characters.

    BPE tokenisers of the priced models average close to four characters of English a token;
    the estimate is at least one token, so a one-letter answer costs exactly one.
    """
    return max(1, math.ceil(len(text) / 4))


def is_letter_answer_prompt(prompt: str) -> bool:
    """True for a multiple-choice prompt answered by one letter (options, ends in 'Answer:')."""
    return bool(_ANSWER_CUE.search(prompt)) and bool(_MULTIPLE_CHOICE.search(prompt))


def output_tokens(prompt: str, result: ModelResult) -> int:
    """Tokens a model is taken to have written: its response if known, else one letter for
    multiple choice, else :data:`DEFAULT_OUTPUT_TOKENS`."""
    if result.response is not None:
        return estimate_tokens(result.response)
    if is_letter_answer_prompt(prompt):
        return 1
    return DEFAULT_OUTPUT_TOKENS


def result_cost(prompt: str, model: str, result: ModelResult, prices: Mapping[str, Price]) -> float:
    """US dollars a model's answer cost: ``cost_usd`` if known, else priced from tokens."""
    if result.cost_usd is not None:
        return result.cost_usd
    price = prices.get(model)
    if price is None:
        raise DataError(f"model {model!r} has no cost_usd and no entry in prices.json")
    tokens_in = estimate_tokens(prompt)
    return (
        tokens_in * price.input_per_mtok + output_tokens(prompt, result) * price.output_per_mtok
    ) / 1e6


@dataclass(frozen=True)
class SourceTable:
    """The rows of one source as matrices, models ordered from cheapest to dearest.

    ``scores`` and ``costs`` are ``(rows, models)``; NaN marks a model that did not answer a row.
    ``responses`` holds each row's cheapest-model response ('' where the row has none).
    """

    source: str
    models: tuple[str, ...]
    ids: tuple[str, ...]
    categories: tuple[str, ...]
    prompts: tuple[str, ...]
    scores: FloatArray
    costs: FloatArray
    responses: tuple[str, ...]

    @property
    def premium(self) -> str:
        """The dearest model (ties go to the better-scoring one)."""
        return self.models[-1]

    @property
    def has_cheap_responses(self) -> bool:
        """Whether most rows carry the cheapest model's response (cascade verifiers need it)."""
        return sum(1 for r in self.responses if r) >= 0.9 * max(1, len(self.responses))

    def complete(self) -> SourceTable:
        """The rows every model answered (evaluation compares models on equal footing)."""
        keep = ~np.isnan(self.scores).any(axis=1)
        return self.subset(np.nonzero(keep)[0])

    def subset(self, index: npt.NDArray[np.intp]) -> SourceTable:
        """The rows at ``index``, in that order."""
        idx = [int(i) for i in index]
        return SourceTable(
            source=self.source,
            models=self.models,
            ids=tuple(self.ids[i] for i in idx),
            categories=tuple(self.categories[i] for i in idx),
            prompts=tuple(self.prompts[i] for i in idx),
            scores=self.scores[index],
            costs=self.costs[index],
            responses=tuple(self.responses[i] for i in idx),
        )


def build_table(
    rows: Sequence[RoutingRow], prices: Mapping[str, Price], models: Sequence[str] | None = None
) -> SourceTable:
    """Matrix form of the rows of one source, models by cost.

    ``models`` fixes the models and their order: the rows' other models are neither read nor
    priced (a :class:`DataError` if none of the rows has a result for one of ``models``).
    """
    if not rows:
        raise DataError("no rows to build a table from")
    source = rows[0].source
    names = sorted({m for r in rows for m in r.results})
    if models is not None:  # only these are compared, so only these are priced
        missing = [m for m in models if m not in names]
        if missing:
            raise DataError(f"source {source!r} has no results for {missing}")
        names = sorted(models)
    n, k = len(rows), len(names)
    scores = np.full((n, k), np.nan)
    costs = np.full((n, k), np.nan)
    for i, row in enumerate(rows):
        for j, m in enumerate(names):
            res = row.results.get(m)
            if res is not None:
                scores[i, j] = res.score
                costs[i, j] = result_cost(row.prompt, m, res, prices)
    if models is None:
        mean_cost = np.nanmean(costs, axis=0)
        mean_score = np.nanmean(scores, axis=0)
        order = sorted(range(k), key=lambda j: (mean_cost[j], mean_score[j], names[j]))
    else:
        order = [names.index(m) for m in models]
    ordered = [names[j] for j in order]
    cheapest = ordered[0]
    responses = tuple(
        (r.results[cheapest].response or "") if cheapest in r.results else "" for r in rows
    )
    return SourceTable(
        source=source,
        models=tuple(ordered),
        ids=tuple(r.id for r in rows),
        categories=tuple(r.category for r in rows),
        prompts=tuple(r.prompt for r in rows),
        scores=scores[:, order],
        costs=costs[:, order],
        responses=responses,
    )


def split_by_source(rows: Iterable[RoutingRow]) -> dict[str, list[RoutingRow]]:
    """Rows grouped by ``source``, sources in order of first appearance."""
    out: dict[str, list[RoutingRow]] = {}
    for row in rows:
        out.setdefault(row.source, []).append(row)
    return out
