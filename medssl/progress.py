"""Progress for long steps: a tqdm bar on a terminal, periodic log lines (rate, ETA) otherwise."""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """Wrap ``items`` with a progress display on stderr (rate and ETA included).

    On a non-terminal (CI logs, files) tqdm prints a line at most every 10 s instead of redrawing.
    """
    interactive = sys.stderr.isatty()
    yield from tqdm(
        items,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        mininterval=0.2 if interactive else 10.0,
        dynamic_ncols=interactive,
        leave=interactive,
    )
