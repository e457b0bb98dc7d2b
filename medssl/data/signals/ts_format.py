"""A reader for the sktime / UEA ``.ts`` format (e.g. BasicMotions).

Header lines start with ``@`` (``@problemName``, ``@dimensions``, ``@equalLength``,
``@classLabel true A B C``, ``@data``); ``#`` lines are comments. After ``@data`` each line is one
series: dimensions separated by ``:``, values by ``,``, the class label last (when
``@classLabel true``). ``?`` marks a missing value. Timestamped series (``(t,v)``) are not supported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medssl.errors import ReaderError


def read_ts(path: Path, length: int | None = None) -> tuple[np.ndarray, list[str | None], list[str]]:
    """Series ``(N, C, T)`` float32, labels (None when unlabeled) and the header's class names.

    Series of unequal length are linearly resampled to ``length`` (default: the longest).
    Raises ``ReaderError`` for a file that is empty, truncated or not in ``.ts`` format.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReaderError(str(path), f"could not be read as text ({type(exc).__name__})") from None
    header: dict[str, str] = {}
    series: list[list[np.ndarray]] = []
    labels: list[str | None] = []
    in_data = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise ReaderError(str(path), f"line {lineno} is neither a @header nor @data; not a .ts file")
            key, _, value = line[1:].partition(" ")
            header[key.lower()] = value.strip()
            in_data = key.lower() == "data"
            continue
        if header.get("timestamps", "false").lower() == "true":
            raise ReaderError(str(path), "timestamped .ts series are not supported; export them without timestamps")
        fields = line.split(":")
        has_label = header.get("classlabel", "false").split(" ")[0].lower() == "true"
        label = fields.pop().strip() if has_label else None
        try:
            dims = [np.array([np.nan if v.strip() == "?" else float(v) for v in f.split(",")]) for f in fields]
        except ValueError:
            raise ReaderError(str(path), f"line {lineno} holds a value that is not a number") from None
        expected = int(header.get("dimensions", len(dims)))
        if len(dims) != expected:
            raise ReaderError(str(path), f"line {lineno} has {len(dims)} dimensions, the header says {expected} (truncated?)")
        series.append(dims)
        labels.append(label)
    if not in_data:
        raise ReaderError(str(path), "no @data section (empty or truncated .ts file)")
    if not series:
        raise ReaderError(str(path), "the @data section holds no series")
    target = length or max(len(d) for dims in series for d in dims)
    out = np.empty((len(series), len(series[0]), target), dtype=np.float32)
    for i, dims in enumerate(series):
        for c, d in enumerate(dims):
            out[i, c] = d if len(d) == target else np.interp(np.linspace(0, 1, target), np.linspace(0, 1, len(d)), d)
    classes = header.get("classlabel", "").split()[1:]
    return out, labels, classes
