"""PhysioNet/CinC Challenge 2012 reader: one ``RecordID.txt`` per ICU stay.

Each file is long format ``Time,Parameter,Value`` over the first 48 h; ``Time`` is ``HH:MM``
since admission, ``-1`` means "not measured". Static descriptors (Age, Gender, Height, ICUType,
Weight) are given at ``00:00``; Weight is also a time series later on.
case_id = patient_id = RecordID (the challenge gives one stay per patient).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medssl.data.ehr.long_csv import parse_hhmm
from medssl.data.manifest import ErrorLog
from medssl.errors import DataError
from medssl.progress import progress

STATIC = ("Age", "Gender", "Height", "ICUType", "Weight")
# The 37 time-series variables of the challenge (fixed, so every subset gets the same grid).
VARIABLES = (
    "ALP", "ALT", "AST", "Albumin", "BUN", "Bilirubin", "Cholesterol", "Creatinine", "DiasABP",
    "FiO2", "GCS", "Glucose", "HCO3", "HCT", "HR", "K", "Lactate", "MAP", "MechVent", "Mg",
    "NIDiasABP", "NIMAP", "NISysABP", "Na", "PaCO2", "PaO2", "Platelets", "RespRate", "SaO2",
    "SysABP", "Temp", "TroponinI", "TroponinT", "Urine", "WBC", "Weight", "pH",
)
COLUMNS = ["Time", "Parameter", "Value"]


def read_stay(path: Path, errors: ErrorLog) -> pd.DataFrame | None:
    """Events of one stay file (``case_id, time_h, variable, value, source``), or None if rejected.

    Static descriptors come back as variables named ``static:Age`` etc. Rows with ``-1`` are
    missing and dropped; the caller's ``clean_events`` counts unparseable and impossible rows.
    """
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        errors.add(path, "empty file (expected a Time,Parameter,Value header and rows)", count=1)
        return None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        errors.add(path, f"not a readable CSV: {str(exc).splitlines()[0]}", count=1)
        return None
    if list(raw.columns) != COLUMNS:
        errors.add(path, f"columns are {list(raw.columns)}; a PhysioNet 2012 file has {COLUMNS}", count=1)
        return None
    if raw.empty:
        errors.add(path, "file has a header but no rows", count=1)
        return None
    record = raw.loc[raw["Parameter"] == "RecordID", "Value"]
    case_id = record.iloc[0].strip() if len(record) else path.stem
    if not case_id:
        errors.add(path, "the RecordID row is empty; a stay needs its id", count=1)
        return None
    raw = raw[raw["Parameter"] != "RecordID"]
    value = pd.to_numeric(raw["Value"].str.strip(), errors="coerce")
    time_h = parse_hhmm(raw["Time"])
    param = raw["Parameter"].str.strip()
    at_zero = time_h == 0
    is_static = param.isin([s for s in STATIC if s != "Weight"]) & at_zero
    # Weight at 00:00 is the static admission weight; later Weight rows are a time series.
    weight0 = (param == "Weight") & at_zero
    is_static |= weight0 & (weight0.cumsum() == 1)
    variable = param.where(~is_static, "static:" + param)
    events = pd.DataFrame({"case_id": case_id, "time_h": time_h, "variable": variable,
                           "value": value, "source": str(path)})
    return events[events["value"] != -1]


def read_outcomes(path: Path) -> pd.Series:
    """``In-hospital_death`` per RecordID (as str) from ``Outcomes-a.txt``."""
    try:
        table = pd.read_csv(path, dtype=str)
    except (OSError, UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError) as exc:  # missing, a folder, not text
        raise DataError(f"--outcomes {path} could not be read ({type(exc).__name__}); pass Outcomes-a.txt") from None
    for col in ("RecordID", "In-hospital_death"):
        if col not in table.columns:
            raise DataError(f"--outcomes {path} has no {col!r} column; pass the challenge's Outcomes-a.txt")
    outcome = table.set_index(table["RecordID"].str.strip())["In-hospital_death"].str.strip()
    return outcome[~outcome.index.duplicated(keep="first")]


def _conflicting_outcomes(path: Path) -> set[str]:
    """RecordIDs listed more than once in ``path`` with different outcomes."""
    table = pd.read_csv(path, dtype=str)
    table = table.assign(RecordID=table["RecordID"].str.strip(), death=table["In-hospital_death"].str.strip())
    counts = table.groupby("RecordID")["death"].nunique(dropna=False)
    return set(counts[counts > 1].index)


def read_physionet2012(
    src: Path, errors: ErrorLog, outcomes: Path | None = None, limit: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read every ``*.txt`` stay in ``src`` (a folder, e.g. ``set-a``) into ``(events, cases)``.

    ``cases``: ``case_id, patient_id`` (+ ``label`` = In-hospital_death "0"/"1" with ``outcomes``).
    """
    if not src.is_dir():
        raise DataError(f"{src} is not a folder; pass the folder of RecordID.txt files (e.g. set-a)")
    files = sorted(p for p in src.glob("*.txt") if not p.name.startswith("Outcomes"))[:limit]
    if not files:
        raise DataError(f"{src} holds no .txt stay files; pass a PhysioNet 2012 set folder")
    frames, seen = [], {}
    for path in progress(files, desc="reading stays", unit="stay"):
        stay = read_stay(path, errors)
        if stay is None:
            continue
        case_id = str(stay["case_id"].iloc[0]) if len(stay) else path.stem
        if case_id in seen:  # two files of one RecordID: never merge two stays into one
            errors.add(path, f"RecordID {case_id} was already read from {seen[case_id].name}; this file was skipped", count=1)
            continue
        seen[case_id] = path
        frames.append(stay)
    if not frames:
        first = errors.rows[0] if errors.rows else {"path": src, "reason": "no stay"}
        raise DataError(f"none of the {len(files)} files in {src} could be read (the first: {first['path']}: {first['reason']})")
    events = pd.concat(frames, ignore_index=True)
    cases = pd.DataFrame({"case_id": pd.unique(events["case_id"])})
    cases["patient_id"] = cases["case_id"]
    if outcomes is not None:
        labels = read_outcomes(outcomes)
        conflicting = _conflicting_outcomes(outcomes)
        labels = labels[~labels.index.isin(conflicting)]
        for case_id in sorted(conflicting & set(cases["case_id"])):
            errors.add(outcomes, f"RecordID {case_id} is listed more than once with different outcomes; "
                       "the stay is kept unlabeled", count=1)
        cases["label"] = cases["case_id"].map(labels).astype(object)
        for case_id in cases.loc[cases["label"].isna() & ~cases["case_id"].isin(conflicting), "case_id"]:
            errors.add(outcomes, f"no outcome for RecordID {case_id}; the stay is kept unlabeled", count=1)
    return events, cases
