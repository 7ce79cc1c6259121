"""Answer extraction and normalisation for consensus votes.

Two answers vote together when their normalised forms are equal. Each normaliser takes
the raw answer text and returns its canonical form, or ``""`` when it finds no answer of
its kind (the candidate then abstains):

``exact``    the text with surrounding whitespace removed
``text``     whitespace collapsed, case folded, trailing punctuation dropped
``numeric``  the final number: ``#### 42`` (GSM8K style), then an explicit statement
             ("the answer is 42", "answer: 42", "final answer: 42", "the result is
             42"), then an equation ("= 42", "equals 42"), then the last number in the
             text; the last of the first kind found. ``1,234.50`` → ``1234.5``,
             ``1e3`` → ``1000``
``choice``   a multiple-choice letter: "(B)", "Answer: B", "the answer is C", a leading
             "B." or "**B**"
``json``     canonical JSON: keys sorted, no insignificant whitespace, a number equal to
             an integer written as that integer (``1.0``, ``1e0`` → ``1``); a code
             fence is unwrapped
``labels``   a set of labels: split on commas, semicolons, newlines and "and", case
             folded, de-duplicated, sorted (a JSON array of strings works too)

``auto`` picks one from the request: JSON output → ``json``; task ``math`` → ``numeric``;
task ``classification`` → ``labels``; otherwise ``text``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal

from quorum.server.domain import ResponseFormatType, RouteRequest
from quorum.server.execute.gate import strip_fence

NORMALIZERS = ("exact", "text", "numeric", "choice", "json", "labels")

_SPACE = re.compile(r"\s+")
# A number, with an exponent when one follows as a whole ("1e3", "2.5E-4"; not the
# "12e4" of "12e4ab", which reads as 12, as before).
_NUMBER = r"[-+−]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+−]?\d+\b)?"
_HASHES = re.compile(r"####\s*(" + _NUMBER + ")")
# An explicit statement of the answer wins over an equation met on the way ("The answer
# is 42. (Note: 2 + 2 = 4)" is 42), and an equation over any other number.
_STATED = re.compile(
    r"(?:answer\s+is\s*[:=]?|answer\s*[:=]|result\s+is\s*[:=]?)\s*\**\s*(" + _NUMBER + ")",
    re.IGNORECASE,
)
_EQUATION = re.compile(r"(?:equals|=)\s*\**\s*(" + _NUMBER + ")", re.IGNORECASE)
_ANY_NUMBER = re.compile(_NUMBER)
_CHOICE_PATTERNS = (
    re.compile(r"answer\s+is\s*[:\-]?\s*\(?\**([A-J])\b\)?", re.IGNORECASE),
    re.compile(r"answer\s*[:\-]\s*\(?\**([A-J])\b\)?", re.IGNORECASE),
    re.compile(r"^\s*\**\(?([A-J])\)?\**\s*(?:[.):\-]|$)", re.MULTILINE),
    re.compile(r"\(([A-J])\)"),
    re.compile(r"\*\*([A-J])\*\*"),
)
_LABEL_SPLIT = re.compile(r"\s*(?:,|;|\n|\band\b|\|)\s*", re.IGNORECASE)


def exact(text: str) -> str:
    return text.strip()


def folded_text(text: str) -> str:
    return _SPACE.sub(" ", text).strip().casefold().rstrip(".!?。 ")


# Exact: normalising drops trailing zeros and never rounds, whatever the exponent.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
_MAX_PLAIN_DIGITS = 1_000  # a number longer than this written out is kept as "1E+5000"


def _canonical_number(raw: str) -> str:
    """``raw`` as one string per value: ``1,000``, ``1000.0`` and ``1e3`` are ``1000``."""
    cleaned = raw.replace("−", "-").replace("$", "").replace(",", "").replace(" ", "")
    try:
        value = Decimal(cleaned)
        if value.is_zero():
            return "0"
        value = value.normalize(_EXACT)
    except ArithmeticError:  # not a number, or an exponent past any context's range
        return ""
    _, digits, exponent = value.as_tuple()
    if len(digits) + abs(int(exponent)) > _MAX_PLAIN_DIGITS:
        return str(value)  # scientific: bounded work, still one string per value
    return format(value, "f")


def numeric(text: str) -> str:
    for pattern in (_HASHES, _STATED, _EQUATION):
        found = pattern.findall(text)
        if found:
            return _canonical_number(found[-1])
    numbers = _ANY_NUMBER.findall(text)
    return _canonical_number(numbers[-1]) if numbers else ""


def choice(text: str) -> str:
    for pattern in _CHOICE_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1).upper()
    stripped = text.strip().rstrip(".").strip("*() ")
    return stripped.upper() if re.fullmatch(r"[A-Ja-j]", stripped) else ""


# A larger integral number in JSON stays a float (or infinity): exact integers beyond any
# real answer's size would only let "1e999" grow an answer's canonical text a hundredfold.
_MAX_INT_DIGITS = 40


def _json_float(raw: str) -> int | float:
    """A JSON number written with a fraction or an exponent: an integer when its value is
    one of at most ``_MAX_INT_DIGITS`` digits (``1.0``, ``1e3``, ``-0.0``), so it votes with
    the same number written as one; past that, a float, as :func:`_json_int` makes an
    integer that long, so equal values still vote alike."""
    value = Decimal(raw)  # a JSON number is always a valid Decimal
    if value.adjusted() < _MAX_INT_DIGITS and value == value.to_integral_value():
        return int(value)  # exact, even past a float's 53 bits
    return float(raw)


def _json_int(raw: str) -> int | float:
    """A JSON integer: exact up to ``_MAX_INT_DIGITS`` digits, a float past them."""
    return int(raw) if len(raw.lstrip("-")) <= _MAX_INT_DIGITS else float(raw)


def canonical_json(text: str) -> str:
    try:
        value = json.loads(strip_fence(text), parse_float=_json_float, parse_int=_json_int)
    except ValueError:
        return ""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def labels(text: str) -> str:
    body = strip_fence(text).strip()
    items: list[str]
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        items = _LABEL_SPLIT.split(body)
    cleaned = {folded_text(i).strip("\"'`*-• ") for i in items}
    return ",".join(sorted(c for c in cleaned if c))


_BY_NAME: Mapping[str, Callable[[str], str]] = {
    "exact": exact,
    "text": folded_text,
    "numeric": numeric,
    "choice": choice,
    "json": canonical_json,
    "labels": labels,
}


def resolve(name: str, request: RouteRequest, task: str) -> str:
    """The normaliser to use: ``name`` itself, or the pick of ``auto`` for this request."""
    if name != "auto":
        return name
    if request.params.response_format.type is not ResponseFormatType.TEXT:
        return "json"
    if task == "math":
        return "numeric"
    if task == "classification":
        return "labels"
    return "text"


def normalize(name: str, text: str) -> str:
    """Apply normaliser ``name`` (one of :data:`NORMALIZERS`) to ``text``."""
    return _BY_NAME[name](text)
