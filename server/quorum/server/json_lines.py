"""JSON lines whose integers may be longer than Python converts.

``int()`` refuses strings of more than ``sys.get_int_max_str_digits()`` digits (4300 by
default), so ``json.loads`` fails a whole line for one such number. The data commands
(``router train``, ``eval``, ``report``) read lines with :func:`loads_line` instead: such
an integer becomes a :class:`LongInteger`, which a field read as a number refuses by name.
"""

from __future__ import annotations

import json
from typing import Any


class LongInteger:
    """An integer of a JSON line longer than Python reads as an ``int`` (more than
    ``sys.get_int_max_str_digits()`` digits, 4300 by default), kept as its text: a field
    read as a number refuses it by name like any other value that is not a number (its
    ``repr`` says how long it is); one read as text (an ``id``) keeps its digits."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"a {len(self.text.lstrip('-'))}-digit integer"


def _long_integer(text: str) -> int | LongInteger:
    try:
        return int(text)
    except ValueError:  # past the limit on digits int() converts
        return LongInteger(text)


def loads_line(line: str) -> Any:
    """``json.loads`` of one line that neither overflows nor raises past
    :class:`json.JSONDecodeError`: an integer of more digits than Python converts becomes
    a :class:`LongInteger`, and a line nested too deeply to read (thousands of ``[``)
    raises :class:`RecursionError` for the caller to name."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        raise
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        return json.loads(line, parse_int=_long_integer)
