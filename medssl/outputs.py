"""Output paths that can never replace an input: checked by every command before it reads anything.

A command's inputs are a DATA_DIR (every file under it belongs to the data: manifest, arrays,
errors.csv, cache), model or checkpoint files and label files. An output may not be one of them,
may not be a DATA_DIR itself, and a run folder is not replaced unless the user says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Mapping

from medssl.errors import ConfigError

Inputs = Mapping[str, "str | Path | None"]  # what the input is ("--data", "--model") -> its path


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def refuse_inputs(out: str | Path, inputs: Inputs, flag: str = "--out") -> Path:
    """``out`` resolved, or ``ConfigError`` when it is, or lies inside, one of ``inputs``.

    A folder input (a DATA_DIR) protects every path under it and the folder itself; a file input
    protects that file (links to it included).
    """
    target = _resolved(out)
    for name, given in inputs.items():
        if given is None:
            continue
        source = _resolved(given)
        if source.is_dir():
            if _inside(target, source):
                raise ConfigError(
                    f"{flag} {out} lies inside {name} {given}, which this command reads (a data folder holds only "
                    "what `medssl ingest` writes, and a re-ingest replaces it whole); write outside it, e.g. "
                    "into a runs/ or scores/ folder"
                )
        elif target == source or (target.exists() and source.exists() and os.path.samefile(target, source)):
            raise ConfigError(f"{flag} {out} is {name} {given}, which this command reads; choose another path")
    return target


def refuse_replacing(
    out: str | Path, flag: str, replaceable: Callable[[Path], bool], what: str, overwrite: bool = False
) -> None:
    """Refuse to replace an existing ``out`` unless ``overwrite`` or ``replaceable(out)`` (the
    command's own earlier output, e.g. a score file); a folder is never replaced by a file."""
    path = Path(out)
    if path.is_dir():
        raise ConfigError(f"{flag} {out} is a folder; give a file path, e.g. {Path(out) / ('out' + (path.suffix or ''))}")
    if path.exists() and not overwrite and not replaceable(path):
        raise ConfigError(
            f"{flag} {out} exists and is not {what}; choose another path, or pass --overwrite to replace it"
        )


def refuse_run_replacement(run_dir: str | Path, writes: Iterable[str], overwrite: bool, hint: str) -> None:
    """Refuse a ``run_dir`` already holding any of the files ``writes`` unless ``overwrite``."""
    folder = Path(run_dir)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {run_dir} is a file; give a folder for the run")
    present = [name for name in writes if (folder / name).exists()]
    if present and not overwrite:
        raise ConfigError(
            f"--out {run_dir} already holds a run ({', '.join(present)}); choose a new folder, "
            f"or pass --overwrite to replace it ({hint})"
        )
