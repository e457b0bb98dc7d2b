"""Ingest ICU stays (PhysioNet 2012, MIMIC-III or a long CSV) into DATA_DIR.

``ingest_ehr(src, out, EhrIngestOptions(format=...))`` writes ``manifest.parquet`` (one row per
stay, split by patient), ``ehr/grid-<id>.npz``, ``ehr/events-<id>.parquet`` and ``errors.csv``
(atomically: ``medssl.data.commit``) and returns the counts ``medssl ingest ehr`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medssl.data import ErrorLog, assign_patient_splits
from medssl.data.commit import IngestWriter, no_cases_error
from medssl.data.ehr.grid import STATIC_PREFIX, build_grid, check_grid_size, choose_variables
from medssl.data.ehr.long_csv import clean_events, read_long_csv
from medssl.data.ehr.mimic3 import STATIC_NAMES as MIMIC_STATIC
from medssl.data.ehr.mimic3 import read_mimic3
from medssl.data.ehr.physionet2012 import STATIC, VARIABLES, read_physionet2012
from medssl.data.limits import MAX_HOURS, MAX_VARIABLES
from medssl.data.splits import check_seed, check_split_fractions
from medssl.errors import ConfigError, DataError

FORMATS = ("physionet2012", "mimic3", "csv")


@dataclass(frozen=True)
class EhrIngestOptions:
    """Options of ``medssl ingest ehr`` (the flags minus SRC and --out), with the CLI's defaults.

    ``format`` (required, as ``--format`` is): ``"physionet2012"`` (a folder of RecordID.txt;
    ``outcomes`` = Outcomes-a.txt adds the in-hospital death label, ``limit`` reads only the
    first N stays), ``"mimic3"`` (a MIMIC-III folder) or ``"csv"`` (one long CSV whose
    ``patient_col``, ``time_col``, ``variable_col`` and ``value_col`` must be named; ``case_col``
    and ``label_col`` are optional). ``hours``/``step_hours``: the observation window and bin
    width; ``max_variables``: mimic3/csv keep the variables measured in most training stays;
    ``val_fraction``/``test_fraction``/``seed``: the patient-level split. ``outcomes`` is stored as a ``Path``.
    Bad values raise ``DataError`` (an unknown format ``ConfigError``).
    """

    format: str
    outcomes: Path | None = None
    patient_col: str | None = None
    time_col: str | None = None
    variable_col: str | None = None
    value_col: str | None = None
    case_col: str | None = None
    label_col: str | None = None
    hours: float = 48.0
    step_hours: float = 1.0
    max_variables: int = 64
    limit: int | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"unknown EHR format {self.format!r}; use one of {', '.join(FORMATS)}")
        check_split_fractions(self.val_fraction, self.test_fraction)
        if self.outcomes is not None and not isinstance(self.outcomes, Path):
            object.__setattr__(self, "outcomes", Path(self.outcomes))
        check_seed(self.seed)
        if self.max_variables < 1:
            raise DataError("--max-variables must be at least 1")
        if self.max_variables > MAX_VARIABLES:
            raise DataError(f"--max-variables {self.max_variables} is more than the limit of {MAX_VARIABLES}")
        if not isinstance(self.hours, (int, float)) or not 0 < self.hours <= MAX_HOURS:  # NaN fails here too
            raise DataError(f"--hours {self.hours} must be a number of hours above 0 and at most {MAX_HOURS:g}")
        if self.limit is not None and self.limit < 1:
            raise DataError(f"--limit {self.limit} must be at least 1 (or left out to read every stay)")
        check_grid_size(0, 0, self.hours, self.step_hours)


def _read(src: Path, options: EhrIngestOptions, errors: ErrorLog) -> tuple[pd.DataFrame, pd.DataFrame, list[str] | None, list[str]]:
    if not src.exists():
        raise DataError(f"{src} does not exist; pass the folder or file to ingest")
    if options.format == "physionet2012":
        events, cases = read_physionet2012(src, errors, outcomes=options.outcomes, limit=options.limit)
        return events, cases, list(VARIABLES), list(STATIC)
    if options.format == "mimic3":
        events, cases = read_mimic3(src, errors)
        return events, cases, None, list(MIMIC_STATIC)
    needed = {"--patient-col": options.patient_col, "--time-col": options.time_col,
              "--variable-col": options.variable_col, "--value-col": options.value_col}
    missing = [flag for flag, value in needed.items() if not value]
    if missing:
        raise DataError(f"--format csv needs {', '.join(missing)} to name the columns of {src}")
    if not src.is_file():
        raise DataError(f"{src} is not a file; --format csv reads one CSV file")
    events, cases = read_long_csv(src, options.patient_col, options.time_col, options.variable_col,
                                  options.value_col, options.case_col, options.label_col, errors)
    return events, cases, None, []


def ingest_ehr(src: str | Path, out: str | Path, options: EhrIngestOptions | None = None) -> dict[str, Any]:
    """Ingest ``src`` into the data dir ``out``; return the summary counts.

    The summary: ``cases`` (stays), ``patients``, ``splits`` (split -> stays), ``variables`` and
    ``bins`` (grid size), ``measurements`` (raw events read), ``dropped`` (values dropped as
    invalid) and ``errors`` (rows of errors.csv). ``options`` is required in practice: there is
    no default format, so ``None`` raises ``ConfigError``.
    """
    if options is None:
        raise ConfigError(f"ingest_ehr needs options=EhrIngestOptions(format=...) with format one of {', '.join(FORMATS)}")
    src, out = Path(src), Path(out)
    errors = ErrorLog()
    events, cases, variables, static_names = _read(src, options, errors)
    n_raw = len(events)
    events = clean_events(events, errors, hours=options.hours)
    cases["split"] = assign_patient_splits(cases, val_fraction=options.val_fraction,
                                           test_fraction=options.test_fraction, seed=options.seed)
    if variables is None:
        train_ids = cases.loc[cases["split"] == "train", "case_id"].tolist()
        variables = choose_variables(events, train_ids, options.max_variables)
    if cases.empty or events.empty:
        raise no_cases_error(out, errors, f"no measurement of {src} is left after cleaning")
    grid = build_grid(events, cases["case_id"].tolist(), variables, static_names, options.hours, options.step_hours)
    series = events[~events["variable"].str.startswith(STATIC_PREFIX)]
    manifest = cases.assign(
        domain="ehr", grid_row=range(len(cases)), n_observations=grid.mask.sum(axis=(1, 2)).astype(int),
        source_format=options.format,
    )
    if "label" in manifest.columns:
        manifest["label"] = manifest["label"].astype(object).where(manifest["label"].notna(), None)
    with IngestWriter(out, "ehr") as writer:
        grid.write(writer.path("grid", "ehr/grid.npz"), writer.ingest_id)
        series[["case_id", "time_h", "variable", "value"]].to_parquet(writer.path("events", "ehr/events.parquet"), index=False)
        writer.commit(manifest, errors)
    dropped = int(errors.frame()["count"].fillna(0).sum()) if "count" in errors.frame().columns else 0
    return {
        "cases": len(cases),
        "patients": int(cases["patient_id"].nunique()),
        "splits": cases["split"].value_counts().to_dict(),
        "variables": len(variables),
        "bins": int(grid.values.shape[-1]),
        "measurements": n_raw,
        "dropped": dropped,
        "errors": len(errors),
    }
