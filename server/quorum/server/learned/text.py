"""What the router reads of a prompt: the focused text for n-grams and a few dense cues.

Both functions are pure and are used unchanged at training time (inside the scikit-learn
pipeline) and at serving time (by the numpy scorer), so the two can never drift apart.

*Focus*: few-shot prompts (RouterBench's ARC and Winogrande carry five solved examples before
the real question) are mostly boilerplate shared by every row; n-grams of the examples drown the
question. :func:`focus_text` keeps only the last block when the blocks repeat a pattern.

*Cues*: length, digits, numbers, maths and code markers, negations ("NOT", "EXCEPT"), paired
statement formats ("Statement 1 |", "Scenario 1 |"), option counts — cheap signals of a prompt's
kind and difficulty that bag-of-n-grams weighs poorly.

*Bound*: only the last :data:`MAX_READ_CHARS` characters of a prompt are read (focus, n-grams and
cues), so scoring costs no more for a multi-megabyte prompt than for one of that length; the
length cues still count the whole prompt. Every training prompt is under half the bound, so for
them (and any prompt up to the bound) the features are exactly what they were.
"""

from __future__ import annotations

import math
import re

MAX_FOCUS_CHARS = 4000
"""Longest text handed to the n-gram featuriser (the tail is kept: questions end prompts)."""

MAX_READ_CHARS = 10_000
"""Longest tail of a prompt that is read at all (the longest training prompt has 4,789)."""

_ESCAPED_NEWLINE = re.compile(r"\\n")
_BLOCKS = re.compile(r"\n\s*\n")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_OPTION = re.compile(r"(?m)^\s*\(?[A-J][).:]\s")
# The word alternatives of these patterns are led by their first letter and a look-behind
# (``[sl](?<!\w[sl])`` is ``\b[sl]``): the same matches as ``\bsqrt\b|\blog\b``, but the
# regex engine can skip ahead to candidate letters instead of testing every position.
_MATH = re.compile(r"[$^=<>≤≥∑∫√π]|\\(?:frac|sqrt)|[sl](?<!\w[sl])(?:(?<=s)qrt\b|(?<=l)og\b)")
_CODE = re.compile(
    r"[{};]|```|[dfrpc](?<!\w[dfrpc])"
    r"(?:(?<=d)ef |(?<=f)unction\b|(?<=r)eturn\b|(?<=p)ython\b|(?<=c)ode\b)"
)
_NEGATION = re.compile(
    r"[NEFLnel](?<!\w[NEFLnel])(?:(?<=N)OT\b|(?<=E)XCEPT\b|(?<=L)EAST\b|(?<=F)ALSE\b"
    r"|(?<=n)ot\b|(?<=e)xcept\b|(?<=l)east\b)"
)
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


def _unescape(prompt: str) -> tuple[str, int]:
    """The last :data:`MAX_READ_CHARS` characters of the prompt, unescaped, and how many
    characters before them were left unread."""
    text = prompt
    if text.startswith("['") and text.endswith("']"):
        text = text[2:-2]
    unread = max(0, len(text) - MAX_READ_CHARS)
    return _ESCAPED_NEWLINE.sub("\n", text[unread:]), unread


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


def _focus(prompt: str) -> tuple[str, bool, int]:
    """The unescaped part of ``prompt`` that matters, whether it is a few-shot tail, and the
    length of the focus (counting, when it is not a few-shot tail, the unread head too)."""
    text, unread = _unescape(prompt)
    tail = _few_shot_tail(text)
    return (text, False, len(text) + unread) if tail is None else (tail, True, len(tail))


def focus_text(prompt: str) -> str:
    """The lower-cased part of ``prompt`` the n-gram features see (see the module docstring)."""
    focus, _, _ = _focus(prompt)
    return focus[-MAX_FOCUS_CHARS:].lower()


def prompt_cues(prompt: str) -> list[float]:
    """Dense cues of ``prompt`` in :data:`CUE_NAMES` order (unscaled)."""
    focus, few_shot, focus_chars = _focus(prompt)
    return _cues(prompt, focus, few_shot, focus_chars)


def focus_and_cues(prompt: str) -> tuple[str, list[float]]:
    """``(focus_text(prompt), prompt_cues(prompt))``, reading the prompt once."""
    focus, few_shot, focus_chars = _focus(prompt)
    return focus[-MAX_FOCUS_CHARS:].lower(), _cues(prompt, focus, few_shot, focus_chars)


_ALL_BYTES = bytes(range(128))
_NOT_ALPHA = bytes(b for b in _ALL_BYTES if not chr(b).isalpha())
_NOT_UPPER = bytes(b for b in _ALL_BYTES if not chr(b).isupper())
_NOT_DIGIT = bytes(b for b in _ALL_BYTES if not chr(b).isdigit())


def _char_classes(text: str) -> tuple[int, int, int]:
    """Counts of letters, upper-case letters and digits (``str.isalpha``/``isupper``/``isdigit``).

    ASCII text (nearly every prompt) is counted by deleting the other bytes, in C.
    """
    if text.isascii():
        raw = text.encode("ascii")
        return (
            len(raw.translate(None, _NOT_ALPHA)),
            len(raw.translate(None, _NOT_UPPER)),
            len(raw.translate(None, _NOT_DIGIT)),
        )
    return sum(map(str.isalpha, text)), sum(map(str.isupper, text)), sum(map(str.isdigit, text))


def _cues(prompt: str, focus: str, few_shot: bool, focus_chars: int) -> list[float]:
    chars = max(1, len(focus))
    words = focus.split()
    letters, upper, digits = _char_classes(focus)
    return [
        math.log1p(len(prompt)),
        math.log1p(focus_chars),
        digits / chars,
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
        1.0 if few_shot else 0.0,
        sum(map(len, words)) / max(1, len(words)),
    ]
