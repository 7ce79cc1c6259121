"""Cues of a cheap model's answer that tell whether a cascade should escalate.

A cascade pays for the cheap call every time; what it buys is the chance to read the answer
before paying for the strong model. On maths word problems (GSM8K) the cheap answer betrays itself
in ways a regex can see:

* format: a final ``#### <number>`` line, a clean number at the end, a truncated reply
  (ends on ``=``, ``<<`` or an operator), units or words after the final number;
* plausibility: GSM8K answers are whole numbers, so a fractional or negative final answer is
  suspect; so is a final answer that merely repeats a number of the question;
* self-consistency: the worked ``<<a*b=c>>`` calculator annotations are re-computed and
  mismatches counted; how often the final answer appears in the reasoning;
* coverage: how many of the question's numbers the reasoning uses, steps, length.

The learned verifier is a logistic regression over these cues (weights in the artifact); this
module only computes them, purely and without third-party imports beyond the standard library.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]+)>>")
_FINAL_MARK = re.compile(r"####\s*(.*)$", re.DOTALL)
_CLEAN_FINAL = re.compile(r"\$?\s*-?[\d,]+(?:\.\d+)?\s*\.?")
_ANSWER_PHRASE = re.compile(r"\b(?:the answer is|answer:|therefore|so the)\b", re.IGNORECASE)
_HEDGE = re.compile(r"\b(?:assume|assuming|approximately|unclear|not possible|cannot)\b", re.I)
_TRUNCATED_ENDS = ("=", "+", "-", "*", "/", "<<", "(", ",", "$")

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}

ANSWER_CUE_NAMES: tuple[str, ...] = (
    "has_final_mark",
    "clean_final",
    "has_final_number",
    "final_is_whole",
    "final_negative",
    "log_response_chars",
    "log_question_chars",
    "question_numbers",
    "question_numbers_used",
    "annotations",
    "annotation_errors",
    "any_annotation_error",
    "annotations_ok",
    "log_lines",
    "final_repeats_question_number",
    "log_final_magnitude",
    "final_mentions",
    "numbers_ratio",
    "question_percent",
    "question_fraction_words",
    "truncated",
    "ends_without_digit",
    "answer_phrase",
    "hedge",
    "empty",
)
"""Names of :func:`answer_cues` outputs, in order."""


def _to_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def _numbers(text: str) -> list[float]:
    return [x for x in (_to_number(t) for t in _NUMBER.findall(text)) if x is not None]


def _evaluate(node: ast.expr) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    raise ValueError("unsupported expression")


def evaluate_arithmetic(expression: str) -> float | None:
    """The value of a ``+ - * /`` expression with parentheses, or None if it is anything else."""
    text = expression.replace(",", "").replace("x", "*").replace("×", "*").strip()
    if not text or len(text) > 200:
        return None
    try:
        tree = ast.parse(text, mode="eval")
        return _evaluate(tree.body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def final_answer(response: str) -> tuple[float | None, bool, bool]:
    """The response's final number, whether a ``####`` line gave it, and whether it is clean."""
    text = response.strip()
    marked = _FINAL_MARK.search(text)
    if marked:
        tail = marked.group(1).strip()
        nums = _numbers(tail)
        clean = bool(tail) and _CLEAN_FINAL.fullmatch(tail) is not None
        return (nums[0] if nums else None), True, clean
    nums = _numbers(text[-120:])
    return (nums[-1] if nums else None), False, False


def _annotation_checks(response: str) -> tuple[int, int, int]:
    found = _ANNOTATION.findall(response)
    ok = bad = 0
    for expression, stated in found:
        value = evaluate_arithmetic(expression)
        claimed = _to_number(stated.strip().rstrip("."))
        if value is None or claimed is None:
            continue
        if (
            abs(value - claimed) <= 1e-6 * max(1.0, abs(value))
            or abs(round(value, 2) - claimed) < 1e-9
        ):
            ok += 1
        else:
            bad += 1
    return len(found), ok, bad


def answer_cues(question: str, response: str) -> list[float]:
    """Cues of ``response`` to ``question`` in :data:`ANSWER_CUE_NAMES` order (unscaled)."""
    text = response.strip()
    final, marked, clean = final_answer(text)
    q_nums = set(_numbers(question))
    r_nums = _numbers(text)
    r_set = set(r_nums)
    n_ann, ok, bad = _annotation_checks(text)
    used = sum(1 for x in q_nums if x in r_set) / max(1, len(q_nums))
    return [
        1.0 if marked else 0.0,
        1.0 if clean else 0.0,
        1.0 if final is not None else 0.0,
        1.0 if final is not None and float(final).is_integer() else 0.0,
        1.0 if final is not None and final < 0 else 0.0,
        math.log1p(len(text)),
        math.log1p(len(question)),
        math.log1p(len(q_nums)),
        used,
        math.log1p(n_ann),
        math.log1p(bad),
        1.0 if bad else 0.0,
        math.log1p(ok),
        math.log1p(text.count("\n")),
        1.0 if final is not None and final in q_nums else 0.0,
        math.log1p(abs(final)) if final is not None else 0.0,
        math.log1p(sum(1 for x in r_nums if x == final)) if final is not None else 0.0,
        len(r_nums) / max(1, len(q_nums)),
        1.0 if re.search(r"%|percent", question) else 0.0,
        1.0 if re.search(r"\b(?:half|third|quarter|fraction)", question) else 0.0,
        1.0 if text.endswith(_TRUNCATED_ENDS) else 0.0,
        1.0 if text and not text[-1].isdigit() else 0.0,
        1.0 if _ANSWER_PHRASE.search(text) else 0.0,
        1.0 if _HEDGE.search(text) else 0.0,
        1.0 if not text else 0.0,
    ]
