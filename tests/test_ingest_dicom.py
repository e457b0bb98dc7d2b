"""DICOM reader and `medssl ingest dicom` on real files: pydicom's test set, pydicom-data, Siemens mosaic."""

from __future__ import annotations

import hashlib
import hmac
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.fileset import FileSet

from medssl.cli import main
from medssl.data import read_errors, read_manifest
from medssl.data.imaging.dicom import read_dicom_pixels
from medssl.errors import ReaderError

TEST_FILES = Path(get_testdata_file("CT_small.dcm")).parent


def _raw(name: str | Path, force: bool = False) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(get_testdata_file(name) if isinstance(name, str) else name, force=force)


def _all_test_files() -> list[Path]:
    return sorted({Path(f).resolve() for f in get_testdata_files() if Path(f).is_file()})


# --- the pixel reader ---------------------------------------------------------------------------


def test_ct_small_is_in_hounsfield_units() -> None:
    ds = _raw("CT_small.dcm")
    pixels, meta = read_dicom_pixels(get_testdata_file("CT_small.dcm"))
    assert pixels.dtype == np.float32 and pixels.shape == (1, 128, 128)
    stored = ds.pixel_array.astype(np.float64)
    expected = stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(pixels[0], expected.astype(np.float32))
    assert stored[64, 64] == 1928 and pixels[0, 64, 64] == 904.0  # 1928 * 1 - 1024
    assert meta["modality"] == "CT" and meta["rescale_intercept"] == -1024.0
    one, _ = read_dicom_pixels(get_testdata_file("CT_small.dcm"), frame=0)
    assert one.shape == (128, 128) and one[64, 64] == 904.0


def test_monochrome1_is_inverted_within_the_representable_range() -> None:
    path = TEST_FILES / "dicomdirtests/77654033/CR1/6154"
    ds = _raw(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    pixels, _ = read_dicom_pixels(path)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    lo, hi = intercept, (2 ** int(ds.BitsStored) - 1) * slope + intercept
    expected = (lo + hi) - (ds.pixel_array.astype(np.float64) * slope + intercept)
    np.testing.assert_allclose(pixels[0], expected, rtol=1e-6)
    assert ds.pixel_array[0, 0] == 1994 and pixels[0, 0, 0] == pytest.approx(1637.084, abs=1e-3)
    # brighter stored value -> darker output: perfectly anti-correlated with the raw array
    assert np.corrcoef(pixels[0].ravel(), ds.pixel_array.ravel())[0, 1] == pytest.approx(-1.0)


def test_voi_window_is_applied_only_when_asked() -> None:
    path = get_testdata_file("RG1_UNCR.dcm")
    full, _ = read_dicom_pixels(path)
    windowed, meta = read_dicom_pixels(path, voi=True)
    assert meta["voi"] is True
    assert not np.array_equal(full, windowed)
    # the window maps to the output range [0, 2**BitsStored - 1] before MONOCHROME1 inversion
    bits = int(_raw("RG1_UNCR.dcm").BitsStored)
    assert windowed.min() >= 0 and windowed.max() <= 2**bits - 1


def test_multiframe_frames_match_the_whole_volume() -> None:
    path = get_testdata_file("emri_small.dcm")
    volume, meta = read_dicom_pixels(path)
    assert volume.shape == (10, 64, 64) and meta["frames"] == 10
    np.testing.assert_array_equal(read_dicom_pixels(path, frame=3)[0], volume[3])
    with pytest.raises(ReaderError, match="frame 10 out of range"):
        read_dicom_pixels(path, frame=10)


def test_colour_becomes_bt601_luminance() -> None:
    ds = _raw("SC_rgb.dcm")
    grey, _ = read_dicom_pixels(get_testdata_file("SC_rgb.dcm"))
    rgb = ds.pixel_array.astype(np.float64)
    np.testing.assert_allclose(grey[0], rgb @ [0.299, 0.587, 0.114], rtol=1e-6)


LOSSLESS_TWINS = [
    ("MR_small.dcm", "MR_small_RLE.dcm"),
    ("MR_small.dcm", "MR_small_jp2klossless.dcm"),
    ("MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm"),
    ("emri_small.dcm", "emri_small_RLE.dcm"),
    ("emri_small.dcm", "emri_small_jpeg_2k_lossless.dcm"),
    ("emri_small.dcm", "emri_small_jpeg_ls_lossless.dcm"),
    ("SC_rgb.dcm", "SC_rgb_rle.dcm"),
    ("SC_rgb.dcm", "SC_rgb_jpeg_gdcm.dcm"),
    ("SC_rgb_16bit.dcm", "SC_rgb_rle_16bit.dcm"),
    ("SC_rgb_32bit_2frame.dcm", "SC_rgb_rle_32bit_2frame.dcm"),
    ("US1_UNCR.dcm", "US1_J2KR.dcm"),
    ("RG1_UNCR.dcm", "RG1_J2KR.dcm"),
    ("MR2_UNCR.dcm", "MR2_J2KR.dcm"),
    ("693_UNCR.dcm", "693_J2KR.dcm"),
    ("OBXXXX1A.dcm", "OBXXXX1A_rle.dcm"),
    ("rtdose.dcm", "rtdose_rle.dcm"),
    # *_UNCI files are the decoded lossy J2K images, so the lossy files match them exactly
    ("US1_UNCI.dcm", "US1_J2KI.dcm"),
    ("MR2_UNCI.dcm", "MR2_J2KI.dcm"),
    ("JPEG2000_UNC.dcm", "JPEG2000.dcm"),
]
LOSSY_TWINS = [  # JPEG baseline (YBR and RGB), lossy GDCM JPEG: within a few grey levels of 255
    ("SC_rgb.dcm", "SC_rgb_jpeg_lossy_gdcm.dcm"),
    ("SC_rgb.dcm", "SC_rgb_dcmtk_+eb+cy+n1.dcm"),
    ("SC_rgb.dcm", "SC_rgb_dcmtk_+eb+cr.dcm"),
    ("SC_rgb.dcm", "SC_rgb_jpeg_dcmtk.dcm"),
]


@pytest.mark.parametrize(("plain", "compressed"), LOSSLESS_TWINS)
def test_lossless_compressed_twin_decodes_identically(plain: str, compressed: str) -> None:
    ts = _raw(compressed).file_meta.TransferSyntaxUID
    assert ts.is_compressed, f"{compressed} should be compressed, is {ts.name}"
    a, _ = read_dicom_pixels(get_testdata_file(plain))
    b, _ = read_dicom_pixels(get_testdata_file(compressed))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("plain", "compressed"), LOSSY_TWINS)
def test_lossy_compressed_twin_is_within_codec_tolerance(plain: str, compressed: str) -> None:
    a, _ = read_dicom_pixels(get_testdata_file(plain))
    b, _ = read_dicom_pixels(get_testdata_file(compressed))
    diff = np.abs(a - b)
    assert 0 < diff.max() <= 10.0  # really lossy, but never more than 10 of 255 grey levels
    assert diff.mean() < 1.0


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("README.txt", "not a DICOM file"),
        ("no_meta.dcm", "not a DICOM file"),
        ("rtplan.dcm", "non-image DICOM object (RT Plan Storage)"),
        ("test-SR.dcm", "non-image DICOM object (Comprehensive SR Storage)"),
        ("waveform_ecg.dcm", "non-image DICOM object (12-lead ECG Waveform Storage)"),
        ("MR_truncated.dcm", "pixel data cannot be decoded: ValueError: The number of bytes of pixel data is less"),
        ("JPEG-lossy.dcm", "pixel data cannot be decoded: RuntimeError"),
    ],
)
def test_bad_files_raise_reader_error_with_reason(name: str, reason: str) -> None:
    with pytest.raises(ReaderError) as info:
        read_dicom_pixels(get_testdata_file(name))
    assert reason in info.value.reason and info.value.path == get_testdata_file(name)


def test_file_without_preamble_is_read_only_when_it_is_a_dataset_and_is_flagged() -> None:
    pixels, meta = read_dicom_pixels(get_testdata_file("OT-PAL-8-face.dcm"))  # raw implicit-VR dataset
    assert pixels.shape == (1, 480, 640) and meta["has_file_meta"] is False
    assert meta["transfer_syntax"] == "1.2.840.10008.1.2"  # inferred from the parsed encoding
    assert read_dicom_pixels(get_testdata_file("CT_small.dcm"))[1]["has_file_meta"] is True


# --- the ingest command -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whole_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Every file of get_testdata_files() (pydicom + pydicom-data), linked into one folder, ingested."""
    files = _all_test_files()
    src = tmp_path_factory.mktemp("testset")
    for i, f in enumerate(files):
        (src / f"{i:03d}").mkdir()
        (src / f"{i:03d}" / f.name).symlink_to(f)
    out = tmp_path_factory.mktemp("testset_out")
    assert main(["ingest", "dicom", str(src), "--out", str(out), "--workers", "2"]) == 0
    return out, files


def test_every_test_file_lands_in_manifest_or_errors(whole_set: tuple[Path, list[Path]]) -> None:
    out, files = whole_set
    manifest, errors = read_manifest(out), read_errors(out)
    in_manifest, in_errors = set(manifest["path"]), set(errors["path"])
    assert in_manifest.isdisjoint(in_errors)
    assert in_manifest | in_errors == {str(f) for f in files}
    assert errors["path"].is_unique and errors["reason"].str.len().min() > 10
    assert manifest["case_id"].is_unique and (manifest["domain"] == "imaging").all()
    assert len(files) == 244 and manifest["path"].nunique() == 90 and len(manifest) == 235


def test_cases_are_split_by_patient(whole_set: tuple[Path, list[Path]]) -> None:
    manifest = read_manifest(whole_set[0])
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert (manifest.groupby("patient_id")["split"].nunique() == 1).all()  # no patient in two splits


def test_manifest_has_the_imaging_contract_columns(whole_set: tuple[Path, list[Path]]) -> None:
    manifest = read_manifest(whole_set[0])
    ct = manifest[manifest["path"] == str(Path(get_testdata_file("CT_small.dcm")).resolve())].iloc[0]
    ds = _raw("CT_small.dcm")
    assert ct["case_id"] == ds.SOPInstanceUID == ct["sop_instance_uid"]
    assert ct["patient_id"] == ds.PatientID and ct["study_uid"] == ds.StudyInstanceUID
    assert ct["series_uid"] == ds.SeriesInstanceUID and ct["modality"] == "CT"
    assert (ct["rows"], ct["columns"], ct["frames"], ct["frame"]) == (128, 128, 1, 0)
    assert ct["pixel_spacing"] == "0.661468\\0.661468" and ct["photometric_interpretation"] == "MONOCHROME2"
    assert ct["transfer_syntax"] == "1.2.840.10008.1.2.1" and ct["source_format"] == "dicom"


def test_multiframe_file_gives_one_case_per_frame(whole_set: tuple[Path, list[Path]]) -> None:
    manifest = read_manifest(whole_set[0])
    emri = manifest[manifest["path"] == str(Path(get_testdata_file("emri_small.dcm")).resolve())]
    sop = _raw("emri_small.dcm").SOPInstanceUID
    assert list(emri["case_id"]) == [f"{sop}:{i}" for i in range(10)]
    assert list(emri["frame"]) == list(range(10)) and set(emri["frames"]) == {10}


def test_rejections_name_their_reason(whole_set: tuple[Path, list[Path]]) -> None:
    errors = read_errors(whole_set[0]).set_index("path")["reason"]
    reason = {Path(p).name: r for p, r in errors.items()}
    assert reason["rtstruct.dcm"].startswith("no pixel data: non-image DICOM object (RT Structure Set Storage)")
    assert reason["DICOMDIR"].startswith("DICOMDIR (a directory index")
    assert reason["zipMR.gz"].startswith("not a DICOM file")
    assert reason["MR_small_RLE.dcm"].startswith("duplicate SOP Instance UID: the same image was already ingested")


def test_patient_names_never_reach_the_manifest(whole_set: tuple[Path, list[Path]]) -> None:
    manifest = read_manifest(whole_set[0])
    names = set()
    for path in manifest["path"].unique():
        ds = _raw(Path(path), force=True)
        name, pid = str(ds.get("PatientName") or ""), str(ds.get("PatientID") or "")
        # anonymised test files often reuse the id as the name; the id itself is kept without a key
        names |= {part for part in name.replace("^", " ").split() if len(part) >= 4 and part not in pid}
    assert len(names) > 5
    cells = "\n".join(manifest.astype(str).to_numpy().ravel())
    assert not [n for n in names if n in cells]
    assert not any("name" in c.lower() for c in manifest.columns)


def test_missing_patient_id_gets_a_study_placeholder(whole_set: tuple[Path, list[Path]]) -> None:
    manifest = read_manifest(whole_set[0]).set_index("path")
    path = str(Path(get_testdata_file("ExplVR_BigEnd.dcm")).resolve())
    ds = _raw("ExplVR_BigEnd.dcm")
    assert not ds.get("PatientID")
    assert manifest.loc[path, "patient_id"] == f"no-patient-id:{ds.StudyInstanceUID}"


def test_dicomdir_is_followed_without_double_counting(tmp_path: Path) -> None:
    dicomdir = TEST_FILES / "dicomdirtests" / "DICOMDIR"
    listed = {Path(i.path).resolve() for i in FileSet(_raw(dicomdir))}
    assert main(["ingest", "dicom", str(dicomdir), "--out", str(tmp_path / "one"), "--workers", "1"]) == 0
    m, e = read_manifest(tmp_path / "one"), read_errors(tmp_path / "one")
    assert set(m["path"]) | set(e["path"]) == {str(p) for p in listed} | {str(dicomdir.resolve())}
    assert len(listed) == 31 and set(m["path"]) == {str(p) for p in listed}
    # the folder holds 7 DICOMDIR variants listing the same 31 files: each file still counted once
    assert main(["ingest", "dicom", str(dicomdir.parent), "--out", str(tmp_path / "all"), "--workers", "1"]) == 0
    m2, e2 = read_manifest(tmp_path / "all"), read_errors(tmp_path / "all")
    assert m2["path"].is_unique and e2["path"].is_unique
    assert listed <= {Path(p) for p in m2["path"]}


def test_siemens_mosaic_folder_with_keyed_pseudonyms(shared_data: Path, tmp_path: Path, capsys) -> None:
    src = shared_data / "imaging" / "dicom_siemens_mosaic"
    headers = [_raw(p) for p in sorted(src.rglob("*")) if p.is_file() and p.suffix not in (".txt", ".md", ".pdf")]
    assert {str(h.PatientID) for h in headers} == {"crlab"} and {str(h.PatientName) for h in headers} == {"stc_test"}
    args = ["ingest", "dicom", str(src), "--pseudonymize-key", "s3cret"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--workers", "1"]) == 0
    assert main([*args[:-1], "other-key", "--out", str(tmp_path / "c")]) == 0
    a, b, c = (read_manifest(tmp_path / x) for x in "abc")
    expected = hmac.new(b"s3cret", b"crlab", hashlib.sha256).hexdigest()[:16]
    assert set(a["patient_id"]) == {expected} and len(a) == len(headers) == 42
    pd.testing.assert_frame_equal(a, b)  # same key -> same ids, whatever the worker count
    assert len(set(c["patient_id"])) == 1 and set(c["patient_id"]) != {expected}
    assert (a["modality"] == "MR").all() and a["series_uid"].nunique() == len({h.SeriesInstanceUID for h in headers})
    assert sorted(a["rows"]) == sorted(int(h.Rows) for h in headers) and 384 in set(a["columns"])
    rejected = sorted(Path(p).name for p in read_errors(tmp_path / "a")["path"])
    assert rejected == ["LICENSE_dcm_qa.txt", "README_dcm_qa.md", "notes.txt", "test_slice_time_Protocols_20131111.pdf"]
    captured = capsys.readouterr()
    cells = "\n".join(a.astype(str).to_numpy().ravel())
    for secret in ("crlab", "stc_test"):
        assert secret not in captured.out + captured.err and secret not in cells


def test_cli_reports_a_missing_source_in_one_line(tmp_path: Path, capsys) -> None:
    code = main(["ingest", "dicom", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_rejects_a_folder_without_images(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    code = main(["ingest", "dicom", str(tmp_path), "--out", str(tmp_path / "out")])
    assert code == 2 and "no readable DICOM image" in capsys.readouterr().err
    assert list(read_errors(tmp_path / "out")["path"]) == [str((tmp_path / "notes.txt").resolve())]


def test_cli_help_explains_the_command(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["ingest", "dicom", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--pseudonymize-key" in text and "errors.csv" in text and os.linesep in text
