"""What the router reads of a prompt: the focused text for n-grams and a few dense cues.

Both functions are pure and are used unchanged at training time (inside the scikit-learn
pipeline) and at serving time (by the numpy scorer), so the two can never drift apart.

*Focus*: few-shot prompts (RouterBench's ARC and Winogrande carry five solved examples before
the real question) are mostly boilerplate shared by every row; n-grams of the examples drown the
question. :func:`focus_text` keeps only the last block when the blocks repeat a pattern.

*Cues*: length, digits, numbers, maths and code markers, negations ("NOT", "EXCEPT"), paired
statement formats ("Statement 1 |", "Scenario 1 |"), option counts — cheap signals of a prompt's
kind and difficulty that bag-of-n-grams weighs poorly.
"""

from __future__ import annotations

import math
import re

MAX_FOCUS_CHARS = 4000
"""Longest text handed to the n-gram featuriser (the tail is kept: questions end prompts)."""

_ESCAPED_NEWLINE = re.compile(r"\\n")
_BLOCKS = re.compile(r"\n\s*\n")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_OPTION = re.compile(r"(?m)^\s*\(?[A-J][).:]\s")
_MATH = re.compile(r"\$|\\frac|\\sqrt|\^|[=<>≤≥∑∫√π]|\bsqrt\b|\blog\b")
_CODE = re.compile(r"\bdef |\bfunction\b|```|\breturn\b|\bpython\b|\bcode\b|[{};]")
_NEGATION = re.compile(r"\b(?:NOT|EXCEPT|LEAST|FALSE)\b|\bnot\b|\bexcept\b|\bleast\b")
_PAIRED = re.compile(r"(?:Statement|Scenario)\s*[12]\s*\|")
_ROMAN = re.compile(r"(?m)^\s*(?:I|II|III|IV)\.\s")

CUE_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_focus_chars",
    "digit_share",
    "log_numbers",
    "math",
    "options",
    "code",
    "negation",
    "paired_statements",
    "roman_items",
    "questions",
    "upper_share",
    "log_lines",
    "few_shot",
    "mean_word_len",
)
"""Names of :func:`prompt_cues` outputs, in order."""


def _unescape(prompt: str) -> str:
    text = prompt
    if text.startswith("['") and text.endswith("']"):
        text = text[2:-2]
    return _ESCAPED_NEWLINE.sub("\n", text)


def _few_shot_tail(text: str) -> str | None:
    """The last block of a few-shot prompt, or None when the prompt is not few-shot."""
    blocks = [b for b in _BLOCKS.split(text.strip()) if b.strip()]
    if len(blocks) < 3:
        return None
    last_line = blocks[-1].strip().splitlines()[-1].strip()
    if not last_line:
        return None
    earlier = sum(1 for b in blocks[:-1] if last_line in b)
    return blocks[-1] if earlier >= 2 else None


def focus_text(prompt: str) -> str:
    """The lower-cased part of ``prompt`` the n-gram features see (see the module docstring)."""
    text = _unescape(prompt)
    tail = _few_shot_tail(text)
    if tail is not None:
        text = tail
    return text[-MAX_FOCUS_CHARS:].lower()


def prompt_cues(prompt: str) -> list[float]:
    """Dense cues of ``prompt`` in :data:`CUE_NAMES` order (unscaled)."""
    text = _unescape(prompt)
    tail = _few_shot_tail(text)
    focus = tail if tail is not None else text
    chars = max(1, len(focus))
    words = focus.split()
    letters = sum(1 for c in focus if c.isalpha())
    upper = sum(1 for c in focus if c.isupper())
    return [
        math.log1p(len(prompt)),
        math.log1p(len(focus)),
        sum(1 for c in focus if c.isdigit()) / chars,
        math.log1p(len(_NUMBER.findall(focus))),
        math.log1p(len(_MATH.findall(focus))),
        float(len(_OPTION.findall(focus))),
        math.log1p(len(_CODE.findall(focus))),
        math.log1p(len(_NEGATION.findall(focus))),
        1.0 if _PAIRED.search(focus) else 0.0,
        1.0 if len(_ROMAN.findall(focus)) >= 2 else 0.0,
        math.log1p(focus.count("?")),
        upper / max(1, letters),
        math.log1p(focus.count("\n")),
        1.0 if tail is not None else 0.0,
        sum(len(w) for w in words) / max(1, len(words)),
    ]
