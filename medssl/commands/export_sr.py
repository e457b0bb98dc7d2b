"""``medssl export sr --scores SCORES --data DATA_DIR --out DIR [--stow URL] [--review-db URL]``."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

SR_DESCRIPTION = """\
Write the model's results as DICOM Structured Reports, one per scored image, so that they can be
read next to the images in the PACS viewer; --stow sends them to the PACS (DICOMweb STOW-RS).

Each report (Comprehensive SR, TID 1500 measurement report) holds the anomaly score, its
percentile, the review flag, the predicted label and probability, and, when the review store has
a standing decision for the case, the reviewer's decision and label. It names the model (model_id)
and references the scored image by its SOP Instance UID (and frame number). It joins the study of
the source image: patient and study attributes are copied from the source DICOM file that the
DATA_DIR's manifest points at (the manifest's pseudonymised patient_id is not used), so that file
must still be there. Only cases ingested from DICOM (`ingest dicom`, `ingest dicomweb`) get a report.

Exporting the same scores twice gives the same report UIDs, so a re-sent report replaces nothing
and duplicates nothing. A new review decision gives a new report.

Examples:
  medssl export sr --scores scores/ct.parquet --data data/ct --out sr/ct
  medssl export sr --scores scores/ct.parquet --data data/ct --out sr/ct --flagged-only \\
      --review-db postgresql+psycopg://app@db/review --stow http://pacs:8042/dicom-web
"""


def register(actions: argparse._SubParsersAction) -> None:
    """Add ``export sr`` to the ``export`` group's actions."""
    s = actions.add_parser("sr", help="scores (and review decisions) as DICOM SR, optionally sent to a PACS",
                           description=SR_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--scores", required=True, metavar="SCORES", help="score file from `medssl score` (.parquet)")
    s.add_argument("--data", default=None, metavar="DATA_DIR", help="the DATA_DIR that was scored (default: the one "
                   "the score file records)")
    s.add_argument("--out", required=True, metavar="DIR", help="folder for the SR files (SR_<case_id>.dcm)")
    s.add_argument("--stow", default=None, metavar="URL", help="also store the reports on this DICOMweb server "
                   "(its DICOMweb root, e.g. http://pacs:8042/dicom-web)")
    s.add_argument("--review-db", default=None, metavar="URL", help="review store to take decisions from (default: "
                   "$MEDSSL_DB, else medssl_review.db in this folder if it exists; none: no decisions)")
    s.add_argument("--flagged-only", action="store_true", help="only the cases flagged for review")
    s.set_defaults(func=run_sr)


def _review_url(given: str | None) -> str | None:
    from medssl.review.constants import DB_ENV, DEFAULT_DB_FILE

    if given:
        return given
    if os.environ.get(DB_ENV):
        return os.environ[DB_ENV]
    default = Path.cwd() / DEFAULT_DB_FILE
    return f"sqlite:///{default}" if default.is_file() else None


def _decisions(url: str | None, case_ids: list[str]) -> dict:
    from medssl.scoring.sr_export import ReviewDecision

    if url is None:
        log.info("no review store given or found: the reports carry no reviewer decisions")
        return {}
    from medssl.review import case_states, make_engine

    engine = make_engine(url)
    try:
        states = case_states(engine, case_ids)
    finally:
        engine.dispose()
    return {cid: ReviewDecision(s.status, s.label, s.decision_event_id) for cid, s in states.items()
            if s.status != "open"}


def run_sr(args: argparse.Namespace) -> int:
    """Write the SRs; with --stow, store them; print what was done."""
    from medssl.data import read_manifest
    from medssl.errors import ConfigError, DataError
    from medssl.outputs import refuse_inputs
    from medssl.review.queue import read_scores, scores_data_dir
    from medssl.scoring.sr_export import dicom_cases, write_srs

    scores = read_scores(args.scores)
    data = args.data or scores_data_dir(args.scores)
    if data is None:
        raise ConfigError(f"{args.scores} does not record its DATA_DIR; pass --data DATA_DIR")
    refuse_inputs(args.out, {"--data": data, "--scores": args.scores})
    if args.flagged_only:
        scores = scores.loc[scores["flagged"].fillna(False).astype(bool)]
    cases, left_out = dicom_cases(scores, read_manifest(data))
    if cases.empty:
        raise DataError(f"no scored case of {args.scores} comes from a DICOM file of {data}"
                        f"{' (and flagged)' if args.flagged_only else ''}; nothing to report")
    decisions = _decisions(_review_url(args.review_db), cases["case_id"].astype(str).tolist())
    paths = write_srs(cases, args.out, decisions)
    line = (f"{len(paths)} DICOM SR written to {args.out} ({len(decisions)} with a reviewer decision; "
            f"{left_out} scored case(s) not from DICOM left out)")
    if args.stow:
        from medssl.scoring.sr_stow import stow

        line += f"; {stow(args.stow, paths)} stored over STOW-RS"
    print(line)
    return 0
