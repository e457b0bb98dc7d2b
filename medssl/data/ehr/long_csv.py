"""Long-format EHR events (one row per measurement) and the checks every EHR reader shares.

An *events* frame has one row per observation::

    case_id (str), time_h (float, hours since the start of the case), variable (str),
    value (float), source (str: the file the row came from, for errors.csv)

``clean_events`` drops impossible values and counts them in the ``ErrorLog``; ``read_long_csv``
reads a generic long CSV (``--patient-col --time-col --variable-col --value-col``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from medssl.data.manifest import ErrorLog
from medssl.errors import DataError

# Plausible physiological ranges (inclusive). A value outside its range is a recording error
# (e.g. a negative heart rate, a temperature of -17 C, a pH of 735) and is dropped + counted.
# Units as in PhysioNet 2012. Variables not listed are only checked for being finite numbers.
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "HR": (1, 300), "Temp": (25, 45), "RespRate": (1, 100), "GCS": (3, 15),
    "SysABP": (1, 300), "DiasABP": (1, 250), "MAP": (1, 300),
    "NISysABP": (1, 300), "NIDiasABP": (1, 250), "NIMAP": (1, 300),
    "SaO2": (1, 100), "FiO2": (0.21, 1.0), "pH": (6.5, 8.0), "PaO2": (1, 800), "PaCO2": (1, 200),
    "HCO3": (1, 100), "Na": (80, 200), "K": (1, 15), "Mg": (0.1, 20), "Glucose": (1, 2000),
    "BUN": (0, 300), "Creatinine": (0, 40), "HCT": (1, 80), "Platelets": (0, 2000), "WBC": (0, 500),
    "Lactate": (0, 40), "Albumin": (0, 10), "ALP": (0, 5000), "ALT": (0, 20000), "AST": (0, 30000),
    "Bilirubin": (0, 100), "Cholesterol": (0, 1500), "TroponinI": (0, 500), "TroponinT": (0, 100),
    "Urine": (0, 20000), "Weight": (1, 400), "MechVent": (0, 1),
    "Age": (0, 120), "Gender": (0, 1), "Height": (50, 250), "ICUType": (1, 4),
}

FLOAT32_MAX = float(np.finfo(np.float32).max)
_HHMM = re.compile(r"^\s*(\d{1,3}):([0-5]\d)\s*$")


def parse_hhmm(times: pd.Series) -> pd.Series:
    """``"HH:MM"`` strings -> float hours; anything else -> NaN (the caller counts those)."""
    parts = times.astype(str).str.extract(_HHMM)
    return parts[0].astype(float) + parts[1].astype(float) / 60.0


def parse_times(times: pd.Series, case_ids: pd.Series) -> pd.Series:
    """Hours since the first event of each case from numbers (hours), ``HH:MM`` or dates.

    Numbers are taken as hours; ``HH:MM`` as hours:minutes since admission; ISO dates as
    absolute times, shifted so each case starts at 0. Unparseable entries become NaN.
    """
    text = times.astype(str).str.strip()
    hours = pd.to_numeric(text, errors="coerce")
    todo = hours.isna()
    if todo.any():
        hours[todo] = parse_hhmm(text[todo])
    todo = hours.isna()
    if todo.any():
        stamps = pd.to_datetime(text[todo], errors="coerce", format="ISO8601")
        if stamps.notna().any():
            start = stamps.groupby(case_ids[todo]).transform("min")
            hours[todo] = (stamps - start).dt.total_seconds() / 3600.0
    return hours.astype(float)


def count_dropped(errors: ErrorLog, dropped: pd.DataFrame, reason: str) -> None:
    """Add one errors.csv row per source file with how many rows were dropped for ``reason``."""
    if dropped.empty:
        return
    for source, n in dropped.groupby("source", observed=True).size().items():
        if n:
            errors.add(source, reason, count=int(n))


def clean_events(events: pd.DataFrame, errors: ErrorLog, hours: float) -> pd.DataFrame:
    """Drop rows with no time, no number, an impossible value, or a time outside ``[0, hours]``.

    Impossible values and unparseable entries are counted in ``errors`` (path, reason, count);
    times outside the observation window ``[0, hours]`` are dropped without an error.
    """
    bad_time = events["time_h"].isna() | ~np.isfinite(events["time_h"].fillna(0))
    count_dropped(errors, events[bad_time], "unknown time format (expected hours, HH:MM or an ISO date)")
    events = events[~bad_time]
    bad_value = events["value"].isna()
    count_dropped(errors, events[bad_value], "value is not a number")
    events = events[~bad_value]
    # inf, and numbers beyond float32 (the grid's type: they would turn into inf there)
    too_big = ~np.isfinite(events["value"]) | (events["value"].abs() > FLOAT32_MAX)
    count_dropped(errors, events[too_big], "value is infinite or too large (beyond float32)")
    events = events[~too_big]
    keep = np.ones(len(events), dtype=bool)
    variables = events["variable"].to_numpy()
    values = events["value"].to_numpy()
    for name, (low, high) in PLAUSIBLE_RANGES.items():
        hit = variables == name
        if not hit.any():
            continue
        out = hit & ((values < low) | (values > high))
        if out.any():
            count_dropped(errors, events[out], f"{name} outside plausible range [{low:g}, {high:g}]")
            keep &= ~out
    events = events[keep]
    inside = (events["time_h"] >= 0) & (events["time_h"] <= hours)
    return events[inside].reset_index(drop=True)


def read_long_csv(
    path: Path,
    patient_col: str,
    time_col: str,
    variable_col: str,
    value_col: str,
    case_col: str | None = None,
    label_col: str | None = None,
    errors: ErrorLog | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a long CSV (one measurement per row) into ``(events, cases)``.

    ``cases`` has ``case_id, patient_id`` and ``label`` when ``label_col`` is given (the first
    non-empty label of a case). Without ``case_col`` each patient is one case. Rows with an empty
    patient or case id, and rows of a case id already seen under another patient, are dropped and
    counted in ``errors``. Raises ``DataError`` naming the missing columns, or when the file is
    empty or no row has an id.
    """
    errors = errors if errors is not None else ErrorLog()
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; pass a CSV with a header row and one measurement per row") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a readable CSV ({str(exc).splitlines()[0]})") from None
    wanted = {"--patient-col": patient_col, "--time-col": time_col, "--variable-col": variable_col,
              "--value-col": value_col, "--case-col": case_col, "--label-col": label_col}
    missing = [f"{flag} {col!r}" for flag, col in wanted.items() if col and col not in raw.columns]
    if missing:
        raise DataError(
            f"{path} has no column(s) {', '.join(missing)}; its columns are {list(raw.columns)}. "
            "Pass the right names with those flags"
        )
    if raw.empty:
        raise DataError(f"{path} has a header but no rows")
    raw = _drop_bad_ids(raw, path, patient_col, case_col, errors)
    case_ids = raw[case_col or patient_col].astype(str)
    events = pd.DataFrame({
        "case_id": case_ids,
        "time_h": parse_times(raw[time_col], case_ids),
        "variable": raw[variable_col].astype(str),
        "value": pd.to_numeric(raw[value_col].str.strip(), errors="coerce"),
        "source": str(path),
    })
    cases = pd.DataFrame({"case_id": case_ids, "patient_id": raw[patient_col].astype(str)})
    if label_col:
        cases["label"] = raw[label_col].replace("", None)
        labels = cases.dropna(subset=["label"]).groupby("case_id")["label"].first()
    cases = cases.drop_duplicates("case_id")[["case_id", "patient_id"]].reset_index(drop=True)
    if label_col:
        cases["label"] = cases["case_id"].map(labels).astype(object)
    return events, cases


def _drop_bad_ids(raw: pd.DataFrame, path: Path, patient_col: str, case_col: str | None, errors: ErrorLog) -> pd.DataFrame:
    """``raw`` without rows whose patient (or case) id is empty, nor rows of a case id that an
    earlier row gave another patient (stays are never merged across patients); counted in ``errors``."""
    empty = raw[patient_col].str.strip() == ""
    if case_col:
        empty |= raw[case_col].str.strip() == ""
    if empty.any():
        cols = f"--patient-col {patient_col!r}" + (f" or --case-col {case_col!r}" if case_col else "")
        errors.add(path, f"empty id in {cols}; row dropped", count=int(empty.sum()))
        raw = raw[~empty]
    if case_col:
        first = raw.groupby(case_col, sort=False)[patient_col].transform("first")
        other = raw[patient_col] != first
        if other.any():
            errors.add(path, f"a case id in --case-col {case_col!r} appears under more than one patient; the rows of "
                       "every patient after the first were dropped (ids must name one stay)", count=int(other.sum()))
            raw = raw[~other]
    if raw.empty:
        raise DataError(f"{path}: no row has a patient id in --patient-col {patient_col!r}; check the column")
    return raw
