"""Cut real WFDB records (signal + beat annotations) to their first seconds, for fast real-data tests."""

from __future__ import annotations

from pathlib import Path


def cut_record(record: Path, seconds: float, out_dir: Path) -> None:
    """Write the first ``seconds`` of WFDB ``record`` (path without extension; .hea/.dat/.atr) into
    ``out_dir`` under the same name: the same samples and the annotations that fall inside."""
    import wfdb

    n = int(seconds * wfdb.rdheader(str(record)).fs)
    wfdb.rdrecord(str(record), sampto=n, physical=False).wrsamp(write_dir=str(out_dir))
    ann = wfdb.rdann(str(record), "atr", sampto=n)
    wfdb.wrann(record.name, "atr", ann.sample, ann.symbol, subtype=ann.subtype, chan=ann.chan, num=ann.num,
               aux_note=ann.aux_note, fs=ann.fs, write_dir=str(out_dir))
