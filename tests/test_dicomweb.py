"""``medssl ingest dicomweb`` against a real Orthanc (tests/orthanc_server.py) loaded with real DICOM files.

The server holds pydicom's CT_small (CT, patient 1CT1), MR_small (MR, 4MR1), emri_small (MR,
10 frames, no PatientID), SC_rgb (OT), rtplan (not an image) and four Siemens mosaic EPI files
from ../shared/data (MR, stc_test). The same files ingested from a folder with ``ingest dicom``
are the reference.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from medssl.cli import main
from medssl.data import read_errors, read_manifest
from medssl.data.imaging.dicom import read_dicom_pixels
from orthanc_server import start_orthanc

PYDICOM_FILES = ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "SC_rgb.dcm", "rtplan.dcm")
CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
CT_SOP = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"


def source_files(shared_data: Path) -> list[Path]:
    mosaic = sorted((shared_data / "imaging" / "dicom_siemens_mosaic" / "In" / "Orientation" / "ax").rglob("*"))
    mosaic = [p for p in mosaic if p.is_file()][:4]
    assert len(mosaic) == 4
    return [Path(get_testdata_file(name)) for name in PYDICOM_FILES] + mosaic


@pytest.fixture(scope="module")
def orthanc(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """A running Orthanc holding ``source_files`` and a folder of links to the same files."""
    server = start_orthanc()
    if isinstance(server, str):
        pytest.skip(server)
    running = next(server)
    folder = tmp_path_factory.mktemp("pacs_files")
    for i, path in enumerate(source_files(shared_data)):
        assert running.upload(path)["Status"] == "Success"
        (folder / f"{i:02d}_{path.name}").symlink_to(path)
    yield running, folder
    next(server, None)


def ingest(orthanc, out: Path, *flags: str) -> int:
    return main(["ingest", "dicomweb", orthanc[0].dicomweb, *flags, "--out", str(out), "--workers", "1"])


def test_everything_matches_ingest_dicom_of_the_same_files(orthanc, tmp_path: Path) -> None:
    """Same rows, columns and values (but the file path and split), same rejections, same pixels."""
    assert ingest(orthanc, tmp_path / "web", "--since", "1900-01-01", "--pseudonymize-key", "k") == 0
    assert main(["ingest", "dicom", str(orthanc[1]), "--out", str(tmp_path / "local"), "--workers", "1",
                 "--pseudonymize-key", "k"]) == 0
    web, local = read_manifest(tmp_path / "web"), read_manifest(tmp_path / "local")
    assert list(web.columns) == list(local.columns)
    web, local = web.sort_values("case_id", ignore_index=True), local.sort_values("case_id", ignore_index=True)
    assert len(web) == len(local) == 1 + 1 + 10 + 1 + 4  # emri_small: one case per frame
    # the split is drawn over patients in the order their files sort, and the paths differ
    others = [c for c in web.columns if c not in ("path", "split")]
    pd.testing.assert_frame_equal(web[others], local[others])
    assert (web.groupby("patient_id")["split"].nunique() == 1).all()
    assert all(Path(p).is_relative_to((tmp_path / "web" / "dicomweb").resolve()) for p in web["path"])
    for (_, a), (_, b) in zip(web.iterrows(), local.iterrows()):
        pixels_web, _ = read_dicom_pixels(a["path"], frame=int(a["frame"]))
        pixels_local, _ = read_dicom_pixels(b["path"], frame=int(b["frame"]))
        np.testing.assert_array_equal(pixels_web, pixels_local)
    errors_web, errors_local = read_errors(tmp_path / "web"), read_errors(tmp_path / "local")
    assert list(errors_web["reason"]) == list(errors_local["reason"]) and len(errors_web) == 1  # the RT plan


def test_by_study(orthanc, tmp_path: Path, capsys) -> None:
    assert ingest(orthanc, tmp_path / "d", "--study", CT_STUDY) == 0
    manifest = read_manifest(tmp_path / "d")
    assert list(manifest["case_id"]) == [CT_SOP] and list(manifest["modality"]) == ["CT"]
    assert "1 instances matched (1 retrieved, 0 already here, 0 failed)" in capsys.readouterr().out


def test_by_patient_pseudonymised_and_never_logged(orthanc, tmp_path: Path, capsys) -> None:
    assert ingest(orthanc, tmp_path / "d", "--patient", "1CT1", "--pseudonymize-key", "secret") == 0
    manifest = read_manifest(tmp_path / "d")
    expected = hmac.new(b"secret", b"1CT1", hashlib.sha256).hexdigest()[:16]
    assert list(manifest["case_id"]) == [CT_SOP] and list(manifest["patient_id"]) == [expected]
    captured = capsys.readouterr()
    assert "1CT1" not in captured.out + captured.err


def test_python_api_at_debug_level_never_logs_the_patient_id(orthanc, tmp_path: Path, caplog) -> None:
    """A notebook with every logger at DEBUG (dicomweb-client and urllib3 log query URLs there)."""
    from medssl.data.imaging.dicomweb import ingest_dicomweb
    from medssl.data.imaging.dicomweb_query import DicomwebQuery

    caplog.set_level(logging.DEBUG)
    summary = ingest_dicomweb(orthanc[0].dicomweb, tmp_path / "d", DicomwebQuery(patient="1CT1"), workers=1)
    assert summary["cases"] == 1 and "match the given patient id" in caplog.text
    assert "1CT1" not in caplog.text


def test_by_modality_and_date(orthanc, tmp_path: Path) -> None:
    assert ingest(orthanc, tmp_path / "mr", "--modality", "mr") == 0
    manifest = read_manifest(tmp_path / "mr")
    assert set(manifest["modality"]) == {"MR"} and len(manifest) == 1 + 10 + 4
    assert ingest(orthanc, tmp_path / "old", "--modality", "MR", "--until", "2001-01-01") == 0
    assert set(read_manifest(tmp_path / "old")["case_id"].str.split(":").str[0]) == {
        read_manifest(tmp_path / "mr").query("frames == 10")["sop_instance_uid"].iloc[0]}  # emri_small, 2000


def test_rerun_retrieves_only_what_is_missing(orthanc, tmp_path: Path, capsys) -> None:
    """Counted in Orthanc's own request log: each instance is fetched once over two runs, and a deleted
    file is fetched again on the third."""
    server = orthanc[0]
    out = tmp_path / "d"
    assert ingest(orthanc, out, "--modality", "MR") == 0
    first = read_manifest(out)
    sops = sorted(set(first["sop_instance_uid"]))
    before = {s: server.requests_matching(f"/instances/{s}") for s in sops}
    assert ingest(orthanc, out, "--modality", "MR") == 0
    assert "6 instances matched (0 retrieved, 6 already here, 0 failed)" in capsys.readouterr().out
    assert {s: server.requests_matching(f"/instances/{s}") for s in sops} == before
    pd.testing.assert_frame_equal(read_manifest(out).drop(columns="split"), first.drop(columns="split"))
    Path(first.loc[first["sop_instance_uid"] == sops[0], "path"].iloc[0]).unlink()
    assert ingest(orthanc, out, "--modality", "MR") == 0
    assert "6 instances matched (1 retrieved, 5 already here, 0 failed)" in capsys.readouterr().out
    after = {s: server.requests_matching(f"/instances/{s}") for s in sops}
    assert after == {s: before[s] + (s == sops[0]) for s in sops}


def test_an_instance_the_pacs_cannot_send_is_an_errors_row_and_the_rest_goes_on(orthanc, tmp_path: Path, capsys) -> None:
    """Orthanc refuses (HTTP 403) the retrieval of one CT instance: the ingest keeps the rest, names the
    instance in errors.csv, and gets it on a rerun once the PACS sends it again."""
    server = orthanc[0]
    out = tmp_path / "d"
    server.refuse(f"/instances/{CT_SOP}")
    try:
        assert ingest(orthanc, out, "--since", "1900-01-01") == 0
    finally:
        server.refuse("")
    assert "9 instances matched (8 retrieved, 0 already here, 1 failed)" in capsys.readouterr().out
    manifest, errors = read_manifest(out), read_errors(out)
    assert CT_SOP not in set(manifest["sop_instance_uid"]) and len(manifest) == 1 + 10 + 1 + 4
    lost = errors[errors["path"].str.contains(CT_SOP, regex=False)]
    assert len(lost) == 1 and "not retrieved" in lost["reason"].iloc[0] and "HTTP 403" in lost["reason"].iloc[0]
    assert ingest(orthanc, out, "--since", "1900-01-01") == 0
    assert "9 instances matched (1 retrieved, 8 already here, 0 failed)" in capsys.readouterr().out
    assert CT_SOP in set(read_manifest(out)["sop_instance_uid"])
    assert not read_errors(out)["path"].str.contains(CT_SOP, regex=False).any()


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_unreachable_server_is_one_clear_line(tmp_path: Path, capsys) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["ingest", "dicomweb", f"http://127.0.0.1:{port}/dicom-web", "--modality", "CT",
                 "--out", str(tmp_path / "d")])
    assert code != 0
    assert "cannot reach the DICOMweb server" in _one_line_error(capsys)
    assert not (tmp_path / "d" / "manifest.parquet").exists()


def test_http_error_and_no_match_are_one_clear_line(orthanc, tmp_path: Path, capsys) -> None:
    code = main(["ingest", "dicomweb", orthanc[0].url + "/not-dicomweb", "--modality", "CT",
                 "--out", str(tmp_path / "d")])
    assert code != 0 and "answered HTTP 404" in _one_line_error(capsys)
    assert ingest(orthanc, tmp_path / "d", "--study", "1.2.3.4.5") != 0
    assert "no instance on" in _one_line_error(capsys)
    assert ingest(orthanc, tmp_path / "d", "--patient", "nobody-here") != 0
    err = _one_line_error(capsys)
    assert "no instance on" in err and "nobody-here" not in err
    assert main(["ingest", "dicomweb", orthanc[0].dicomweb, "--out", str(tmp_path / "d")]) != 0
    assert "give at least one of --study" in _one_line_error(capsys)
    assert ingest(orthanc, tmp_path / "d", "--since", "last week") != 0
    assert "YYYY-MM-DD" in _one_line_error(capsys)
