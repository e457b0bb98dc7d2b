"""An ICU stay as a clinician reads it: one small panel per variable with units and normal ranges,
the patient's demographics and ICU type, and the impossible values the source file recorded.

Demographics come from the grid the ingest wrote (``static``: the file's values, NaN where it said
``-1``, i.e. not recorded); an impossible one (Age 200) is called out, not shown as if true.
Impossible time-series values never reach the grid (``medssl.data.ehr.long_csv.clean_events``
drops them and counts them in errors.csv with the source file), so the page reads errors.csv
and, for a PhysioNet 2012 stay whose file is still there, the raw values themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medssl.domains.ehr_variables import GENDERS, ICU_TYPES, STATICS, variable_info

_RANGE_REASON = re.compile(r"^(?P<var>\S+) outside plausible range \[(?P<lo>[-\d.e+]+), (?P<hi>[-\d.e+]+)\]$")


@dataclass(frozen=True)
class VitalsView:
    """``observations``: columns ``time_h, variable, value`` (raw names, own units); ``default`` the
    variables shown first; ``variables``: one row per variable with ``variable, name, unit, low,
    high`` (NaN range where none); ``demographics``: ``field, value`` rows; ``warnings``: one
    sentence per impossible or suspicious value."""

    observations: pd.DataFrame
    default: list[str]
    variables: pd.DataFrame
    demographics: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    x_label: str = "hours since admission"
    caption: str | None = None


def variables_table(names: list[str]) -> pd.DataFrame:
    """``variable, name, unit, low, high`` for ``names`` (``ehr_variables``; unknown: raw name)."""
    rows = []
    for v in names:
        info = variable_info(v)
        low, high = info.normal if info.normal else (np.nan, np.nan)
        rows.append({"variable": v, "name": info.name, "unit": info.unit, "low": low, "high": high})
    return pd.DataFrame(rows, columns=["variable", "name", "unit", "low", "high"])


def _fmt(name: str, value: float) -> str:
    from medssl.data.ehr.long_csv import PLAUSIBLE_RANGES

    if pd.isna(value):
        return "not recorded"
    low, high = PLAUSIBLE_RANGES.get(name, (-np.inf, np.inf))
    if not low <= value <= high:
        unit = STATICS[name].unit if name in STATICS else ""
        return f"{value:g} {unit} (impossible)".replace("  ", " ")
    if name == "ICUType":
        return ICU_TYPES.get(int(value), f"unknown code {value:g}")
    if name == "Gender":
        return GENDERS.get(int(value), f"unknown code {value:g}")
    unit = STATICS[name].unit if name in STATICS else ""
    return f"{value:g} {unit}".strip()


def demographics(static_names: list[str], values: np.ndarray) -> pd.DataFrame:
    """``field, value`` rows for a stay's static descriptors ``values`` ``(S,)`` (NaN: not recorded)."""
    rows = [{"field": STATICS[n].name if n in STATICS else n, "value": _fmt(n, float(v))}
            for n, v in zip(static_names, np.asarray(values, dtype=np.float64))]
    return pd.DataFrame(rows, columns=["field", "value"])


def _raw_values(path: Path, variable: str, low: float, high: float) -> list[tuple[str, float]]:
    """``(time, value)`` rows of PhysioNet 2012 file ``path`` where ``variable`` lies outside ``[low, high]``."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        value = pd.to_numeric(raw["Value"].str.strip(), errors="coerce")
    except (OSError, KeyError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return []
    hit = (raw["Parameter"].str.strip() == variable) & (value != -1) & ((value < low) | (value > high))
    return list(zip(raw.loc[hit, "Time"].str.strip(), value[hit].astype(float)))


def impossible_values(errors: pd.DataFrame, case_id: str) -> list[str]:
    """Sentences for the values of stay ``case_id`` that the ingest dropped as impossible.

    ``errors``: the data dir's errors.csv (``path, reason, count``); rows of the stay's own file
    (a PhysioNet 2012 file is named after its RecordID) whose reason is "X outside plausible range
    [lo, hi]". The raw values are read back from that file when it is still there."""
    out: list[str] = []
    if errors.empty or not {"path", "reason"} <= set(errors.columns):
        return out
    mine = errors[errors["path"].astype(str).map(lambda p: Path(p).stem) == str(case_id)]
    for r in mine.itertuples(index=False):
        m = _RANGE_REASON.match(str(r.reason))
        if m is None:
            continue
        var, lo, hi = m["var"], float(m["lo"]), float(m["hi"])
        info = STATICS.get(var) or variable_info(var)
        found = _raw_values(Path(str(r.path)), var, lo, hi)
        for time, value in found:
            out.append(f"{info.name} {value:g} {info.unit}".rstrip() + f" recorded at {time}: impossible (outside "
                       f"{lo:g}-{hi:g}); the ingest dropped it, so it is shown as not recorded.")
        if not found:
            count = r.count if hasattr(r, "count") and pd.notna(r.count) else 1
            out.append(f"{int(count)} {info.name} value(s) outside {lo:g}-{hi:g} were dropped at ingest as impossible "
                       f"(errors.csv; the source file {r.path} is no longer readable).")
    return out


def impossible_statics(static_names: list[str], values: np.ndarray) -> list[str]:
    """Sentences for recorded static values that cannot be true: outside the ingest's plausible
    ranges (``PLAUSIBLE_RANGES``: Age 0-120, Height 50-250 cm, ...) or unknown codes (gender, ICU
    type). The grid keeps static values as the file gave them, so the page must say it."""
    from medssl.data.ehr.long_csv import PLAUSIBLE_RANGES

    out = []
    for n, v in zip(static_names, np.asarray(values, dtype=np.float64)):
        if pd.isna(v):
            continue
        info = STATICS.get(n, variable_info(n))
        low, high = PLAUSIBLE_RANGES.get(n, (-np.inf, np.inf))
        if not low <= v <= high:
            out.append(f"{info.name} {v:g} {info.unit}".rstrip() + f" recorded: impossible (outside {low:g}-{high:g}); "
                       "check the source record.")
        elif (n == "Gender" and int(v) not in GENDERS) or (n == "ICUType" and int(v) not in ICU_TYPES):
            out.append(f"{info.name} holds the unknown code {v:g}.")
    return out


def vitals_view(obs: pd.DataFrame, default: list[str], static_names: list[str], static: np.ndarray,
                errors: pd.DataFrame, case_id: str) -> VitalsView:
    """The view of one stay: ``obs`` its observed points, ``static`` its ``(S,)`` static row."""
    names = sorted(obs["variable"].unique(), key=lambda v: (v not in default, variable_info(v).name.lower()))
    warnings = impossible_statics(static_names, static) + impossible_values(errors, case_id)
    return VitalsView(obs, default, variables_table(names), demographics(static_names, static), warnings,
                      caption="Points are the hourly means of the measured values; lines only join them; the shaded "
                              "band is the normal adult range.")


def stay_statics(data_dir: Path, row: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """Static names and the stay's raw static row ``(S,)`` from the data dir's grid."""
    from medssl.data.ehr import GridStore

    grid = GridStore.load(data_dir)
    index = row.get("grid_row")
    ids = list(np.asarray(grid.case_ids).astype(str))
    i = int(index) if index is not None and pd.notna(index) else ids.index(str(row["case_id"]))
    return list(grid.static_names), np.asarray(grid.static[i], dtype=np.float64)
