"""Find the files under a DICOM source: recursive folder walk plus the files a DICOMDIR lists.

Every path is made absolute and resolved (symlinks, ``..``) so a file reached both by the walk
and through a DICOMDIR is ingested once. A DICOMDIR entry whose file is missing becomes an
errors.csv row; the DICOMDIR file itself is passed on like any file (ingest records it as an index).
``DicomSource`` yields the files while it walks; ``scan_dicom_source`` lists them all, sorted.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator

from medssl.errors import DataError


def _is_dicomdir_name(path: Path) -> bool:
    return path.name.upper().startswith("DICOMDIR")


def _resolve_case_insensitive(base: Path, parts: list[str]) -> Path | None:
    """``base/parts...`` matching each component exactly or, failing that, case-insensitively."""
    current = base
    for part in parts:
        exact = current / part
        if exact.exists():
            current = exact
            continue
        try:
            match = next((c for c in current.iterdir() if c.name.upper() == part.upper()), None)
        except OSError:
            return None
        if match is None:
            return None
        current = match
    return current


def dicomdir_references(dicomdir: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files listed by ``dicomdir`` -> (existing resolved paths, [(missing path, reason)]).

    A file that is not a readable DICOMDIR lists nothing (ingest reports it on its own).
    """
    import pydicom  # here only: ingest's main process otherwise never needs pydicom

    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(dicomdir, force=False)
            records = list(ds.get("DirectoryRecordSequence") or [])
    except Exception:
        return found, missing
    for record in records:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [str(p) for p in file_id] if isinstance(file_id, (list, pydicom.multival.MultiValue)) else [str(file_id)]
        target = _resolve_case_insensitive(dicomdir.parent, parts)
        if target is None or not target.is_file():
            where = dicomdir.parent.joinpath(*parts)
            missing.append((str(where), f"listed in DICOMDIR {dicomdir} but the file does not exist"))
        else:
            found.append(target.resolve())
    return found, missing


class DicomSource:
    """The candidate files under a DICOM source, yielded as the scan finds them.

    Iterating yields each file once, absolute and resolved: first those of the recursive folder
    walk (folder by folder, names in directory order), then those only a DICOMDIR lists. After the
    iteration, ``missing`` holds ``[(path, reason)]`` for DICOMDIR entries whose file is absent,
    sorted by path. Ingest feeds its decoding workers from this iterator, so decoding starts with
    the first files found instead of after the whole tree is listed.

    Raises ``DataError`` (on construction) if ``src`` does not exist.
    """

    def __init__(self, src: str | Path) -> None:
        self.root = Path(src).expanduser()
        if not self.root.exists():
            raise DataError(
                f"DICOM source {self.root} does not exist; pass a DICOM file, a DICOMDIR or a folder of them"
            )
        self.missing: list[tuple[str, str]] = []

    def _walk(self) -> Iterator[str]:
        """Every file of the walk, resolved: ``os.walk``'s folders (sub-folders sorted, folder
        symlinks not followed), one ``scandir`` per folder; a folder is resolved once, a file only
        when it is a symlink itself. Yields absolute paths that exist as files."""
        if self.root.is_file():
            yield str(self.root.resolve())
            return
        stack = [str(self.root)]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except OSError:  # unreadable or vanished folder: os.walk skips it too
                continue
            real = os.path.realpath(folder)
            subfolders = []
            for entry in entries:
                try:
                    if entry.is_dir():
                        if not entry.is_symlink():
                            subfolders.append(entry.path)
                    elif entry.is_file():
                        yield os.path.realpath(entry.path) if entry.is_symlink() else os.path.join(real, entry.name)
                except OSError:
                    continue
            stack.extend(sorted(subfolders, reverse=True))  # popped in sorted order, depth first

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        dicomdirs: list[str] = []
        for path in self._walk():
            if path in seen:
                continue
            seen.add(path)
            if _is_dicomdir_name(Path(path)):
                dicomdirs.append(path)
            yield path
        missing: dict[str, str] = {}
        for dicomdir in sorted(dicomdirs):
            found, absent = dicomdir_references(Path(dicomdir))
            for ref in map(str, found):
                if ref not in seen:
                    seen.add(ref)
                    yield ref
            for where, reason in absent:
                missing.setdefault(where, reason)
        self.missing = sorted(missing.items())


def scan_dicom_source(src: str | Path) -> tuple[list[str], list[tuple[str, str]]]:
    """All candidate files under ``src`` (sorted, unique, resolved) and rows for missing DICOMDIR entries.

    Raises ``DataError`` if ``src`` does not exist.
    """
    source = DicomSource(src)
    paths = sorted(source)
    return paths, source.missing
