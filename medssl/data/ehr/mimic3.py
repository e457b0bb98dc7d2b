"""MIMIC-III reader: event tables -> one case per ICU stay.

case_id = ``icustay_id``, patient_id = ``subject_id``, label = ``hospital_expire_flag`` of the
admission ("0"/"1"). Time = hours since the stay's ``intime``. Events come from whichever of
these tables are present (the public demo lacks CHARTEVENTS and LABEVENTS)::

    CHARTEVENTS, LABEVENTS*, OUTPUTEVENTS (charttime, value), INPUTEVENTS_MV (starttime, amount),
    PROCEDUREEVENTS_MV (starttime, value)

Variables are named ``TABLE:label`` from D_ITEMS / D_LABITEMS (e.g. ``OUTPUTEVENTS:Foley``).
Rows flagged ``iserror`` and INPUTEVENTS_MV orders with status ``Rewritten`` (superseded by a
later order) are skipped as MIMIC documents. Static features: Age at ICU admission (MIMIC
shifts ages over 89 to about 300; they are set to 90) and Gender (0 = F, 1 = M).
*LABEVENTS has no icustay_id; its rows are placed in a stay by admission and time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medssl.data.manifest import ErrorLog
from medssl.errors import DataError
from medssl.progress import progress

REQUIRED = ("ICUSTAYS", "ADMISSIONS", "PATIENTS")
# table -> (time column, value column)
EVENT_TABLES: dict[str, tuple[str, str]] = {
    "CHARTEVENTS": ("charttime", "valuenum"),
    "LABEVENTS": ("charttime", "valuenum"),
    "OUTPUTEVENTS": ("charttime", "value"),
    "INPUTEVENTS_MV": ("starttime", "amount"),
    "PROCEDUREEVENTS_MV": ("starttime", "value"),
}
STATIC_NAMES = ["Age", "Gender"]
MAX_AGE = 90.0


def _table(src: Path, name: str) -> Path | None:
    for candidate in (src / f"{name}.csv", src / f"{name}.csv.gz", src / f"{name.lower()}.csv"):
        if candidate.is_file():
            return candidate
    return None


def _read(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; a MIMIC-III table needs its header row") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a readable CSV ({str(exc).splitlines()[0]}); is this a MIMIC-III v1.4 table?") from None
    table.columns = [c.lower() for c in table.columns]
    return table


def _need(table: pd.DataFrame, path: Path, columns: list[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; is this a MIMIC-III v1.4 table?")


def read_stays(src: Path) -> pd.DataFrame:
    """One row per ICU stay: ``case_id, patient_id, hadm_id, intime, outtime, label, age, gender``."""
    paths = {name: _table(src, name) for name in REQUIRED}
    missing = [name for name, p in paths.items() if p is None]
    if missing:
        raise DataError(f"{src} lacks {', '.join(n + '.csv' for n in missing)}; pass the MIMIC-III folder")
    stays, adm, pat = (_read(paths[n]) for n in REQUIRED)
    _need(stays, paths["ICUSTAYS"], ["icustay_id", "subject_id", "hadm_id", "intime", "outtime"])
    _need(adm, paths["ADMISSIONS"], ["hadm_id", "hospital_expire_flag"])
    _need(pat, paths["PATIENTS"], ["subject_id", "gender", "dob"])
    out = stays[["icustay_id", "subject_id", "hadm_id", "intime", "outtime"]].merge(
        adm[["hadm_id", "hospital_expire_flag"]], on="hadm_id", how="left"
    ).merge(pat[["subject_id", "gender", "dob"]], on="subject_id", how="left")
    intime = pd.to_datetime(out["intime"], errors="coerce")
    dob = pd.to_datetime(out["dob"], errors="coerce")
    age = ((intime - dob).dt.days / 365.25).clip(upper=MAX_AGE)
    return pd.DataFrame({
        "case_id": out["icustay_id"].astype(str), "patient_id": out["subject_id"].astype(str),
        "hadm_id": out["hadm_id"].astype(str), "intime": intime,
        "outtime": pd.to_datetime(out["outtime"], errors="coerce"),
        "label": out["hospital_expire_flag"].replace("", None).astype(object),
        "age": age.astype(float), "gender": out["gender"].map({"F": 0.0, "M": 1.0}).astype(float),
    })


def _item_labels(src: Path) -> dict[str, str]:
    labels: dict[str, str] = {}
    for name in ("D_ITEMS", "D_LABITEMS"):
        path = _table(src, name)
        if path is not None:
            table = _read(path)
            if {"itemid", "label"} <= set(table.columns):
                labels.update(zip(table["itemid"], table["label"].str.strip()))
    return labels


def _events_of(path: Path, table: str, stays: pd.DataFrame, labels: dict[str, str], errors: ErrorLog) -> pd.DataFrame:
    time_col, value_col = EVENT_TABLES[table]
    raw = _read(path)
    needed = ["itemid", time_col, value_col] + (["hadm_id"] if table == "LABEVENTS" else ["icustay_id"])
    missing = [c for c in needed if c not in raw.columns]
    if missing:
        errors.add(path, f"lacks column(s) {missing}; table skipped", count=1)
        return pd.DataFrame()
    if "iserror" in raw.columns:
        raw = raw[raw["iserror"].isin(["", "0"])]
    if "statusdescription" in raw.columns:
        raw = raw[raw["statusdescription"] != "Rewritten"]
    when = pd.to_datetime(raw[time_col], errors="coerce")
    if table == "LABEVENTS":  # no icustay_id: the stay of the same admission covering that time
        joined = raw.assign(_when=when).merge(stays[["case_id", "hadm_id", "intime", "outtime"]], on="hadm_id")
        joined = joined[(joined["_when"] >= joined["intime"]) & (joined["_when"] <= joined["outtime"])]
        raw, when, case_ids = joined, joined["_when"], joined["case_id"]
    else:
        no_stay = raw["icustay_id"].str.strip() == ""
        if no_stay.any():
            errors.add(path, "row has no icustay_id, so it cannot be placed in an ICU stay", count=int(no_stay.sum()))
        raw, when = raw[~no_stay], when[~no_stay]
        case_ids = raw["icustay_id"].str.strip()
    intime = case_ids.map(stays.set_index("case_id")["intime"])
    return pd.DataFrame({
        "case_id": case_ids.to_numpy(),
        "time_h": ((when - pd.to_datetime(intime)).dt.total_seconds() / 3600.0).to_numpy(),
        "variable": (table + ":" + raw["itemid"].map(lambda i: labels.get(i, i))).to_numpy(),
        "value": pd.to_numeric(raw[value_col].str.strip(), errors="coerce").to_numpy(),
        "source": str(path),
    })[intime.notna().to_numpy()]


def read_mimic3(src: Path, errors: ErrorLog) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a MIMIC-III folder into ``(events, cases)`` (one case per ICU stay, static included)."""
    if not src.is_dir():
        raise DataError(f"{src} is not a folder; pass the folder holding ICUSTAYS.csv, ADMISSIONS.csv, ...")
    stays = read_stays(src)
    labels = _item_labels(src)
    frames = []
    present = [(t, p) for t in EVENT_TABLES if (p := _table(src, t)) is not None]
    if not present:
        raise DataError(f"{src} holds none of the event tables {list(EVENT_TABLES)}")
    for table, path in progress(present, desc="reading MIMIC-III tables", unit="table"):
        frames.append(_events_of(path, table, stays, labels, errors))
    static = pd.DataFrame({
        "case_id": np.repeat(stays["case_id"].to_numpy(), 2),
        "time_h": 0.0,
        "variable": np.tile(["static:Age", "static:Gender"], len(stays)),
        "value": np.column_stack([stays["age"], stays["gender"]]).ravel(),
        "source": str(_table(src, "ICUSTAYS")),
    }).dropna(subset=["value"])
    events = pd.concat([f for f in frames if len(f)] + [static], ignore_index=True)
    return events, stays[["case_id", "patient_id", "label"]].copy()
