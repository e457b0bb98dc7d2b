"""``medssl export sr``: the whole way back to the PACS, on a real Orthanc (tests/orthanc_server.py).

Real DICOM files go into Orthanc, come out with ``ingest dicomweb``, are scored by ``medssl score``
with a real (small, seeded) model file, one case gets a reviewer decision in a real review store,
and the SRs are read back with pydicom and found in Orthanc over QIDO-RS after ``--stow``.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ComprehensiveSRStorage

from medssl.cli import main
from medssl.data import read_manifest
from orthanc_server import start_orthanc
from score_models import build_model_file

FILES = ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "SC_rgb.dcm")


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory):
    """(server, DATA_DIR, scores path, review-store URL, the decided case id)."""
    server = start_orthanc()
    if isinstance(server, str):
        pytest.skip(server)
    running = next(server)
    for name in FILES:
        assert running.upload(get_testdata_file(name))["Status"] == "Success"
    root = tmp_path_factory.mktemp("sr")
    data = root / "data"
    assert main(["ingest", "dicomweb", running.dicomweb, "--since", "1900-01-01", "--out", str(data),
                 "--workers", "1"]) == 0
    manifest = read_manifest(data)
    model = build_model_file(root / "model.pt", data, manifest.assign(split="train"), kind="model")
    scores = root / "scores.parquet"
    assert main(["score", "--model", str(model), "--data", str(data), "--out", str(scores), "--flag-top", "3"]) == 0
    db = f"sqlite:///{root / 'review.db'}"
    from medssl.review import import_scores, make_engine, record_decision

    engine = make_engine(db)
    import_scores(engine, scores, data)
    decided = str(pd.read_parquet(scores).query("flagged")["case_id"].iloc[0])
    record_decision(engine, decided, "dr_a", "assign_class", label="pneumonia")
    engine.dispose()
    yield running, data, scores, db, decided
    next(server, None)


def _items(ds: pydicom.Dataset):
    """Every content item of an SR tree, depth first."""
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _items(item)


def _name(item: pydicom.Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeMeaning) if "ConceptNameCodeSequence" in item else ""


def _code(items: list, name: str) -> str | None:
    found = [str(i.ConceptCodeSequence[0].CodeMeaning) for i in items if _name(i) == name and i.ValueType == "CODE"]
    return found[0] if found else None


def test_one_sr_per_scored_image_read_back_with_pydicom(scored, tmp_path: Path, capsys) -> None:
    server, data, scores_path, db, decided = scored
    out = tmp_path / "sr"
    assert main(["export", "sr", "--scores", str(scores_path), "--data", str(data), "--out", str(out),
                 "--review-db", db]) == 0
    assert "(1 with a reviewer decision;" in capsys.readouterr().out
    scores = pd.read_parquet(scores_path).set_index("case_id")
    manifest = read_manifest(data).set_index("case_id")
    files = sorted(out.glob("SR_*.dcm"))
    assert len(files) == len(scores) == 1 + 1 + 10 + 1  # emri_small: one report per frame
    seen = set()
    for path in files:
        sr = pydicom.dcmread(path)
        assert sr.SOPClassUID == ComprehensiveSRStorage and sr.Modality == "SR"
        items = list(_items(sr))
        refs = [i.ReferencedSOPSequence[0] for i in items if i.ValueType == "IMAGE"]
        assert len(refs) == 1
        frame = int(refs[0].ReferencedFrameNumber) - 1 if "ReferencedFrameNumber" in refs[0] else 0
        sop = str(refs[0].ReferencedSOPInstanceUID)
        case = manifest.loc[manifest["sop_instance_uid"] == sop].query("frame == @frame").index[0]
        seen.add(case)
        row, source = scores.loc[case], manifest.loc[case]
        assert sr.StudyInstanceUID == source["study_uid"]  # filed with the source study
        nums = {_name(i): float(i.MeasuredValueSequence[0].NumericValue) for i in items if i.ValueType == "NUM"}
        assert nums["Anomaly score"] == pytest.approx(row["anomaly_score"], rel=1e-6)
        assert nums["Anomaly percentile"] == pytest.approx(row["anomaly_percentile"], rel=1e-6)
        assert nums["Predicted probability"] == pytest.approx(row["predicted_proba"], rel=1e-6)
        assert _code(items, "Flagged for review") == ("Yes" if row["flagged"] else "No")
        assert _code(items, "Predicted label") == row["predicted_label"]
        if case == decided:
            assert _code(items, "Reviewer decision") == "labelled" and _code(items, "Reviewer label") == "pneumonia"
        else:
            assert _code(items, "Reviewer decision") is None
    assert seen == set(scores.index)
    # the same scores exported again: the same report UIDs (a PACS keeps one copy)
    assert main(["export", "sr", "--scores", str(scores_path), "--data", str(data), "--out", str(tmp_path / "again"),
                 "--review-db", db]) == 0
    uids = {p.name: pydicom.dcmread(p).SOPInstanceUID for p in files}
    assert {p.name: pydicom.dcmread(p).SOPInstanceUID for p in (tmp_path / "again").glob("SR_*.dcm")} == uids


def test_stow_puts_the_reports_in_the_pacs(scored, tmp_path: Path, capsys) -> None:
    server, data, scores_path, db, decided = scored
    out = tmp_path / "sr"
    assert main(["export", "sr", "--scores", str(scores_path), "--data", str(data), "--out", str(out),
                 "--flagged-only", "--review-db", db, "--stow", server.dicomweb]) == 0
    assert "3 stored over STOW-RS" in capsys.readouterr().out
    from dicomweb_client import DICOMwebClient

    client = DICOMwebClient(server.dicomweb)
    for path in out.glob("SR_*.dcm"):
        sr = pydicom.dcmread(path, stop_before_pixels=True)
        found = client.search_for_instances(search_filters={"SOPInstanceUID": sr.SOPInstanceUID})
        assert len(found) == 1 and found[0]["0020000D"]["Value"][0] == sr.StudyInstanceUID
        stored = client.retrieve_instance(sr.StudyInstanceUID, sr.SeriesInstanceUID, sr.SOPInstanceUID)
        assert stored.ContentSequence == sr.ContentSequence
    series = [s for s in server.get("/series?expand") if s["MainDicomTags"].get("Modality") == "SR"]
    assert sum(len(s["Instances"]) for s in series) == 3
    json.dumps(series)  # Orthanc's own view agrees: three SR instances, in the source studies


def test_stow_to_an_unreachable_pacs_is_one_clear_line(scored, tmp_path: Path, capsys) -> None:
    _, data, scores_path, _, _ = scored
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["export", "sr", "--scores", str(scores_path), "--data", str(data), "--out", str(tmp_path / "sr"),
                 "--stow", f"http://127.0.0.1:{port}/dicom-web"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("medssl: error: cannot reach the DICOMweb server")
