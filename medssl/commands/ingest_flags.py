"""argparse ``type=`` parsers for the numeric flags of ``medssl ingest ...``: a value out of range
is one usage error naming the flag (``argument --hours: ...``), never a traceback later on.

NaN and infinity are refused everywhere; the ranges come from ``medssl.data.limits``.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

from medssl.data.limits import MAX_SEED


def int_range(low: int, high: int) -> Callable[[str], int]:
    """A parser of whole numbers in ``[low, high]``."""
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    parse.__name__ = "whole number"  # argparse names the type in its own messages
    return parse


def float_range(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    """A parser of finite numbers in ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, got {text!r}") from None
        if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def fraction(text: str) -> float:
    """A share of patients in ``[0, 1)``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {text}")
    return value


seed = int_range(0, MAX_SEED)
