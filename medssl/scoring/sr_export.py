"""Scores back to the PACS as DICOM Structured Reports (highdicom): one Comprehensive SR per scored image.

Each SR is a TID 1500 Measurement Report holding one TID 1501 measurement group:

- NUM  "Anomaly score" (no unit), "Anomaly percentile" (%), "Predicted probability" (no unit)
- CODE "Flagged for review" -> SCT Yes/No, "Predicted label" -> the model's class
- CODE "Reviewer decision" -> confirmed/dismissed/labelled and "Reviewer label" -> the class the
  reviewer gave, when the review store has a standing decision for the case
- the algorithm (medssl, its version, the model id) and an IMAGE item "Source of Measurement"
  referencing the scored image's SOP Instance UID (and frame number for multi-frame files)

Concepts without a standard code use the private coding scheme ``99MEDSSL``. The SR copies the
patient and study attributes of the source file (``manifest.path``), so a PACS files it in the
source study: ``medssl ingest`` pseudonymises only the manifest's patient_id, never the files or
their UIDs. UIDs are derived from the model, case, scoring time and decision, so exporting the
same scores twice gives the same SR instances (a PACS keeps one copy).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from medssl.data.imaging.dicomweb_query import quiet_client_log
from medssl.errors import DataError
from medssl.progress import progress

SCHEME = "99MEDSSL"
ANOMALY_SCORE = Code("anomaly-score", SCHEME, "Anomaly score")
ANOMALY_PERCENTILE = Code("anomaly-pctl", SCHEME, "Anomaly percentile")
PREDICTED_PROBA = Code("predicted-proba", SCHEME, "Predicted probability")
FLAGGED = Code("flagged", SCHEME, "Flagged for review")
PREDICTED_LABEL = Code("predicted-label", SCHEME, "Predicted label")
REVIEW_DECISION = Code("review-decision", SCHEME, "Reviewer decision")
REVIEW_LABEL = Code("review-label", SCHEME, "Reviewer label")
NO_UNIT = Code("1", "UCUM", "no units")
PERCENT = Code("%", "UCUM", "percent")
IMAGING = Code("363679005", "SCT", "Imaging")
SERIES_NUMBER = 9100
SERIES_DESCRIPTION = "medssl anomaly scores"


@dataclass(frozen=True)
class ReviewDecision:
    """A case's standing review decision: ``status`` confirmed/dismissed/labelled, ``label`` or None."""

    status: str
    label: str | None
    event_id: int | None = None


def _present(value: Any) -> bool:
    """A value a score row really holds (pandas 3: missing is NaN/None/NA)."""
    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array: present
        return True


def _concept(text: str) -> Any:
    import highdicom as hd

    text = str(text)
    return hd.sr.CodedConcept(text[:64] or "-", SCHEME, text[:64] or "-")


def _medssl_version() -> str:
    try:
        return version("medssl")
    except PackageNotFoundError:
        return "unknown"


def measurement_group(case: Mapping[str, Any], source: Dataset, decision: ReviewDecision | None) -> Any:
    """The TID 1501 group of one scored case (``case``: a score row joined with its manifest row)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    measurements = []
    for name, column, unit in ((ANOMALY_SCORE, "anomaly_score", NO_UNIT), (ANOMALY_PERCENTILE, "anomaly_percentile",
                               PERCENT), (PREDICTED_PROBA, "predicted_proba", NO_UNIT)):
        if _present(case.get(column)):
            measurements.append(hd.sr.Measurement(name=name, value=float(case[column]), unit=unit))
    evaluations = [hd.sr.QualitativeEvaluation(FLAGGED, codes.SCT.Yes if bool(case.get("flagged")) else codes.SCT.No)]
    if _present(case.get("predicted_label")):
        evaluations.append(hd.sr.QualitativeEvaluation(PREDICTED_LABEL, _concept(case["predicted_label"])))
    if decision is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(REVIEW_DECISION, _concept(decision.status)))
        if decision.label:
            evaluations.append(hd.sr.QualitativeEvaluation(REVIEW_LABEL, _concept(decision.label)))
    frames = int(case["frames"]) if _present(case.get("frames")) else 1
    frame_numbers = [int(case["frame"]) + 1] if frames > 1 else None
    model_id = str(case["model_id"]) if _present(case.get("model_id")) else "unknown"
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=["medssl-sr-tracking", model_id, str(case["case_id"])]),
            identifier=f"medssl case {case['case_id']}"[:64],
        ),
        algorithm_id=hd.sr.AlgorithmIdentification(name="medssl", version=_medssl_version(),
                                                   parameters=[f"model {model_id}"[:64]]),
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(
            source, referenced_frame_numbers=frame_numbers)],
    )


def build_sr(case: Mapping[str, Any], source: Dataset, decision: ReviewDecision | None, instance_number: int) -> Any:
    """One ``highdicom.sr.ComprehensiveSR`` for ``case`` in the study of ``source`` (its header)."""
    import highdicom as hd

    key = [str(case.get("model_id")), str(case["case_id"]), str(case.get("scored_at")),
           "" if decision is None else f"{decision.status}:{decision.label}:{decision.event_id}"]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(),
        procedure_reported=IMAGING,
        imaging_measurements=[measurement_group(case, source, decision)],
    )
    return hd.sr.ComprehensiveSR(
        evidence=[source],
        content=report[0],
        series_instance_uid=generate_uid(entropy_srcs=["medssl-sr-series", key[0], str(source.StudyInstanceUID)]),
        series_number=SERIES_NUMBER,
        sop_instance_uid=generate_uid(entropy_srcs=["medssl-sr", *key]),
        instance_number=instance_number,
        manufacturer="medssl",
        series_description=SERIES_DESCRIPTION,
    )


def _file_name(case_id: str) -> str:
    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in str(case_id))
    return f"SR_{safe[:150]}.dcm"


def dicom_cases(scores: pd.DataFrame, manifest: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Score rows joined with their manifest rows, DICOM sources only; and how many rows were left out."""
    columns = [c for c in ("case_id", "path", "frame", "frames", "source_format") if c in manifest.columns]
    if "path" not in columns or "source_format" not in columns:
        raise DataError("the DATA_DIR's manifest has no DICOM files (no path/source_format columns); "
                        "export sr needs a DATA_DIR made by `medssl ingest dicom` or `ingest dicomweb`")
    joined = scores.merge(manifest[columns], on="case_id", how="inner", validate="many_to_one")
    joined = joined.loc[joined["source_format"].astype(str) == "dicom"]
    return joined.reset_index(drop=True), len(scores) - len(joined)


def write_srs(cases: pd.DataFrame, out: str | Path, decisions: Mapping[str, ReviewDecision]) -> list[Path]:
    """Write one SR per row of ``cases`` (from :func:`dicom_cases`) into folder ``out``; returns the paths.

    Each file is written under a temporary name and renamed, so a file in ``out`` is always whole.
    Raises ``DataError`` when a source file named by the manifest cannot be read.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    headers: dict[str, Dataset] = {}
    written: list[Path] = []
    with quiet_client_log():
        for case_number, case in enumerate(progress(cases.to_dict("records"), total=len(cases), desc="export sr",
                                                    unit="report"), start=1):
            written.append(_write_one(case, case_number, headers, out, decisions))
    return written


def _write_one(case: dict[str, Any], number: int, headers: dict[str, Dataset], out: Path,
               decisions: Mapping[str, ReviewDecision]) -> Path:
    """Build and write the SR of one case (source headers cached in ``headers`` by path)."""
    path = str(case["path"])
    if path not in headers:
        try:
            headers[path] = pydicom.dcmread(path, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise DataError(f"source DICOM {path} of case {case['case_id']} cannot be read ({type(exc).__name__}); "
                            "the SR copies its study: restore the file or re-ingest") from None
    sr = build_sr(case, headers[path], decisions.get(str(case["case_id"])), number)
    target = out / _file_name(case["case_id"])
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=out)
    os.close(fd)
    try:
        sr.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target
