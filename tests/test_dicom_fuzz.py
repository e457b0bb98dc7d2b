"""Property test: corrupted real DICOM bytes never crash `medssl ingest dicom`.

Each corrupted file ends up either as an errors.csv row with a reason, or as valid manifest rows
whose pixels the reader can decode again. The run always finishes (exit 0: a good file sits beside).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from medssl.cli import main
from medssl.data import read_errors, read_manifest
from medssl.data.imaging.dicom import read_dicom_pixels

SEEDS = [  # small real files: native, big-endian, RLE, JPEG 2000, JPEG-LS, colour, multi-frame, RT plan
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "ExplVR_BigEnd.dcm",
    "SC_rgb_rle_2frame.dcm",
    "JPEG2000.dcm",
    "rtdose.dcm",
    "rtplan.dcm",
]
SEED_BYTES = {name: Path(get_testdata_file(name)).read_bytes() for name in SEEDS}


@st.composite
def corrupted_dicom(draw: st.DrawFn) -> bytes:
    """Real DICOM bytes with one corruption: truncation, flipped bytes, garbage around, or noise."""
    data = bytearray(SEED_BYTES[draw(st.sampled_from(SEEDS))])
    kind = draw(st.sampled_from(["truncate", "flip", "append", "prepend", "random"]))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "flip":
        for offset in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[offset] ^= draw(st.integers(1, 255))
        return bytes(data)
    garbage = draw(st.binary(min_size=1, max_size=512))
    if kind == "append":
        return bytes(data) + garbage
    if kind == "prepend":
        return garbage + bytes(data)
    return draw(st.binary(min_size=0, max_size=4096))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=corrupted_dicom())
def test_corrupted_dicom_never_crashes_ingest(payload: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        src.mkdir()
        shutil.copy(get_testdata_file("CT_small.dcm"), src / "good.dcm")
        bad = src / "bad.dcm"
        bad.write_bytes(payload)
        assert main(["-q", "ingest", "dicom", str(src), "--out", str(out), "--workers", "1"]) == 0
        manifest, errors = read_manifest(out), read_errors(out)
        bad_path = str(bad.resolve())
        in_manifest = manifest[manifest["path"] == bad_path]
        in_errors = errors[errors["path"] == bad_path]
        assert (len(in_manifest) > 0) != (len(in_errors) > 0)  # exactly one of the two
        if len(in_errors):
            assert len(in_errors) == 1 and len(in_errors["reason"].iloc[0]) > 10
        else:
            row = in_manifest.iloc[0]
            pixels, _ = read_dicom_pixels(bad_path)
            assert pixels.shape == (row["frames"], row["rows"], row["columns"])
            assert len(in_manifest) == row["frames"]
        assert str((src / "good.dcm").resolve()) in set(manifest["path"])


@pytest.mark.parametrize("cut", [0, 10, 128, 132, 300, 1000, 5000])
def test_truncated_ct_small_at_fixed_offsets_is_rejected(tmp_path: Path, cut: int) -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "cut.dcm").write_bytes(data[:cut])
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "src" / "good.dcm")
    assert main(["-q", "ingest", "dicom", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    errors = read_errors(tmp_path / "out")
    assert list(errors["path"]) == [str((tmp_path / "src" / "cut.dcm").resolve())]
    # the good file beside it is still ingested, as its one 64x64 frame (MR_small.dcm)
    manifest = read_manifest(tmp_path / "out")
    assert manifest[["path", "frames", "rows", "columns"]].values.tolist() == [
        [str((tmp_path / "src" / "good.dcm").resolve()), 1, 64, 64]]


def test_a_rust_decoder_panic_is_an_errors_row_not_a_crash(tmp_path: Path) -> None:
    """A flipped byte in this RLE file makes pylibjpeg-rle's Rust decoder panic (pyo3
    PanicException, a BaseException, not an Exception): ingest must still report it and go on."""
    data = bytearray(SEED_BYTES["MR_small_RLE.dcm"])
    data[1644] ^= 0xFF
    src = tmp_path / "src"
    src.mkdir()
    (src / "panics.dcm").write_bytes(bytes(data))
    shutil.copy(get_testdata_file("MR_small.dcm"), src / "good.dcm")
    assert main(["-q", "ingest", "dicom", str(src), "--out", str(tmp_path / "out")]) == 0
    errors = read_errors(tmp_path / "out")
    assert len(errors) == 1 and errors["path"].iloc[0].endswith("panics.dcm")
    assert "PanicException" in errors["reason"].iloc[0]
    assert read_manifest(tmp_path / "out")["path"].str.endswith("good.dcm").tolist() == [True]
