"""Progress for long steps: a tqdm bar on a terminal, periodic plain log lines elsewhere.

On a terminal (or in a notebook) a tqdm bar is redrawn in place; nested bars (an embedding
inside a fine-tuning inside a label-efficiency curve) stack and the inner ones vanish when done.

Anywhere else (``2> run.log``, CI, a batch scheduler) no bar is drawn: redraws and the cursor
moves of nested bars (``ESC[A``) would fill the log with control characters. Instead a plain
log line such as ``decode images: 200/520 img (38%), 45.1 img/s, ETA 0:00:07`` is written every
10 seconds (``MEDSSL_PROGRESS_EVERY_S`` changes that), and a closing line (count, time, rate)
for a step that ran that long. Steps shorter than that print nothing.

``medssl -q`` calls :func:`set_quiet`: then no progress is shown at all.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
Postfix = str | Callable[[], str] | None

EVERY_ENV = "MEDSSL_PROGRESS_EVERY_S"
LOG_EVERY_S = 10.0  # default seconds between two progress lines when stderr is not a terminal
_REFRESH_S = 0.2  # seconds between two redraws of a terminal bar

log = logging.getLogger(__name__)
_quiet = False


def set_quiet(quiet: bool) -> None:
    """``True`` hides every progress display (bars and lines) of this process (``medssl -q``)."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    """Whether progress displays are hidden (see :func:`set_quiet`)."""
    return _quiet


def _interactive() -> bool:
    """A terminal, or a Jupyter kernel (tqdm.auto then draws a notebook widget)."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) or type(stream).__module__.startswith("ipykernel")


def _log_every_s() -> float:
    try:
        return max(0.0, float(os.environ.get(EVERY_ENV, LOG_EVERY_S)))
    except ValueError:
        return LOG_EVERY_S


def _clock(seconds: float) -> str:
    return tqdm.format_interval(max(0.0, seconds))


class Progress:
    """One progress display over ``total`` units (``None``: unknown), started at ``initial``.

    ``update(n, postfix)`` advances it; ``postfix`` (text, or a function returning text, called
    only when something is shown) is appended, e.g. the current loss. ``close()`` ends it.
    """

    def __init__(
        self, total: float | None = None, desc: str = "", unit: str = "it", initial: int = 0,
        interactive: bool | None = None,
    ) -> None:
        self.total = None if total is None or total == float("inf") else int(total)
        self.desc, self.unit, self.n = desc, unit, int(initial)
        self._initial = int(initial)
        self._start = self._last_line = time.monotonic()
        self._lines = 0
        self._postfix: Postfix = None
        self._bar: tqdm | None = None
        self._closed = _quiet
        self._every = _log_every_s()
        if not _quiet and (_interactive() if interactive is None else interactive):
            self._bar = tqdm(
                total=self.total, initial=self.n, desc=desc, unit=unit, file=sys.stderr,
                mininterval=_REFRESH_S, dynamic_ncols=True, leave=None,  # None: keep only the outermost bar
            )
            self._last_postfix = 0.0

    def set_description(self, desc: str) -> None:
        """Change the text in front of the count (e.g. the epoch)."""
        self.desc = desc
        if self._bar is not None:
            self._bar.set_description_str(desc, refresh=False)

    def update(self, n: int = 1, postfix: Postfix = None) -> None:
        """Advance by ``n`` units; ``postfix`` replaces the text after the count."""
        if self._closed:
            return
        self.n += n
        if postfix is not None:
            self._postfix = postfix
        now = time.monotonic()
        if self._bar is not None:
            if self._postfix is not None and now - self._last_postfix >= _REFRESH_S:
                self._bar.set_postfix_str(self._text(self._postfix), refresh=False)
                self._last_postfix = now
            self._bar.update(n)
        elif now - self._last_line >= self._every:
            self._last_line = now
            self._lines += 1
            log.info("%s", self._line(now))

    def close(self) -> None:
        """End the display; a logged step that printed progress lines gets a closing line."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            if self._postfix is not None:
                self._bar.set_postfix_str(self._text(self._postfix), refresh=False)
            self._bar.close()
        elif self._lines:
            elapsed = time.monotonic() - self._start
            rate = (self.n - self._initial) / elapsed if elapsed > 0 else 0.0
            extra = self._text(self._postfix)
            log.info("%s: %d %s done in %s (%.3g %s/s)%s", self.desc, self.n, self.unit, _clock(elapsed), rate,
                     self.unit, f", {extra}" if extra else "")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _text(postfix: Postfix) -> str:
        return postfix() if callable(postfix) else (postfix or "")

    def _line(self, now: float) -> str:
        elapsed = now - self._start
        rate = (self.n - self._initial) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.n}"]
        if self.total:
            parts[0] += f"/{self.total} {self.unit} ({100.0 * self.n / self.total:.0f}%)"
            eta = (self.total - self.n) / rate if rate > 0 else None
            parts.append(f"{rate:.3g} {self.unit}/s")
            parts.append("ETA " + (_clock(eta) if eta is not None else "unknown"))
        else:
            parts[0] += f" {self.unit}"
            parts.append(f"{rate:.3g} {self.unit}/s")
        extra = self._text(self._postfix)
        if extra:
            parts.append(extra)
        return ", ".join(parts)


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """Wrap ``items`` with a progress display on stderr (rate and ETA included): see the module doc."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    bar = Progress(total, desc=desc, unit=unit)
    try:
        for item in items:
            yield item
            bar.update()
    finally:
        bar.close()
