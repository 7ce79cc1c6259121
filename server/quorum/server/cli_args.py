"""Argument types shared by the command-line tools: numbers checked as argparse reads
them, so a bad value is a usage error naming the option, never a traceback later."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole_at_least(low: int, why: str = "") -> Callable[[str], int]:
    """A whole number of at least ``low``; ``why`` explains the bound in the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}{why}, not {value}")
        return value

    return parse


def finite_number(accept: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    """A finite number that ``accept`` takes; the error says it must be ``expected``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"must be {expected}, not {text}")
        return value

    return parse
