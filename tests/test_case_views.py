"""Case views: each domain says how its cases are shown, and an image case shows the pixels the model saw.

The imaging checks use real colour inputs: pydicom's RGB test files (one frame, two frames, and a
480 x 640 ultrasound the dataset resizes) ingested with ``medssl ingest dicom``, and real
PneumoniaMNIST images made RGB (three different channels) in a MedMNIST-style npz.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medssl.cli import main
from medssl.data import ErrorLog, read_manifest, write_manifest
from medssl.data.imaging.dataset import ImagingDataset
from medssl.data.imaging.intensity import scale_intensity
from medssl.data.imaging.npz import scan_npz
from medssl.data.imaging.preprocessing import to_square
from medssl.domains.case_views import (
    CASE_VIEWS,
    CaseContext,
    ImageView,
    Notice,
    case_view_provider,
    generic_case_view,
    register_case_view,
)
from medssl.review.case_view import view_case

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, written out here on purpose
RGB_DICOM = ("SC_rgb.dcm", "SC_rgb_2frame.dcm", "US1_UNCR.dcm")


def _model_input(view: ImageView, dataset: ImagingDataset) -> np.ndarray:
    """What the dataset feeds the model, recomputed from the shown frame: scale, pad, resize."""
    return to_square(scale_intensity(view.frames[view.frame], dataset.preprocessing), dataset.size).numpy()


def test_colour_npz_case_shows_the_grey_the_dataset_scores(shared_data: Path, tmp_path: Path) -> None:
    with np.load(shared_data / "imaging" / "pneumoniamnist_trainval.npz") as archive:
        grey_images, labels = archive["val_images"][:6], archive["val_labels"][:6]
    # three different channels, so the channel mean and the luminance differ
    rgb = np.stack([grey_images, grey_images[:, ::-1], 255 - grey_images], axis=-1).astype(np.uint8)
    np.savez(tmp_path / "colour.npz", val_images=rgb, val_labels=labels)
    manifest = scan_npz(tmp_path / "colour.npz", ErrorLog())
    write_manifest(manifest, tmp_path / "data")
    manifest = read_manifest(tmp_path / "data")
    dataset = ImagingDataset(tmp_path / "data", manifest)
    assert dataset.size == 28  # native size: the dataset does not resize
    for i, case_id in enumerate(manifest["case_id"]):
        view = view_case(tmp_path / "data", manifest, case_id)
        assert isinstance(view, ImageView) and view.frames.shape == (1, 28, 28) and view.frame == 0
        luminance = (rgb[i].astype(np.float32) @ LUMA.astype(np.float32))
        np.testing.assert_array_equal(view.frames[0], luminance)
        assert np.abs(view.frames[0] - rgb[i].mean(axis=-1)).max() > 1  # not the plain channel mean
        np.testing.assert_array_equal(_model_input(view, dataset), dataset[i].numpy())


def test_rgb_dicom_case_shows_the_grey_the_dataset_scores(tmp_path: Path) -> None:
    import pydicom
    from pydicom.data import get_testdata_file

    src = tmp_path / "src"
    src.mkdir()
    for name in RGB_DICOM:
        shutil.copy(get_testdata_file(name), src / name)
    two = pydicom.dcmread(src / "SC_rgb_2frame.dcm")  # shares its SOP Instance UID with SC_rgb.dcm
    two.SOPInstanceUID = two.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    two.save_as(src / "SC_rgb_2frame.dcm")
    assert main(["-q", "ingest", "dicom", str(src), "--out", str(tmp_path / "data"), "--workers", "1"]) == 0
    manifest = read_manifest(tmp_path / "data")
    assert sorted(Path(p).name for p in manifest["path"]) == sorted(
        ["SC_rgb.dcm", "SC_rgb_2frame.dcm", "SC_rgb_2frame.dcm", "US1_UNCR.dcm"])
    dataset = ImagingDataset(tmp_path / "data", manifest, cache=False)
    for i, row in manifest.iterrows():
        view = view_case(tmp_path / "data", manifest, row["case_id"])
        rgb = pydicom.dcmread(row["path"]).pixel_array.astype(np.float64)
        rgb = rgb if rgb.ndim == 4 else rgb[None]  # (frames, H, W, 3)
        assert isinstance(view, ImageView) and view.frames.shape == rgb.shape[:3]  # its stored size
        assert view.frame == int(row["frame"])
        np.testing.assert_allclose(view.frames, rgb @ LUMA, rtol=1e-6, atol=1e-4)
        assert np.abs(view.frames - rgb.mean(axis=-1)).max() > 1  # not the plain channel mean
        np.testing.assert_array_equal(_model_input(view, dataset), dataset[i].numpy())
    assert dataset.size == 224 and (480, 640) in {view_case(tmp_path / "data", manifest, c).frames.shape[1:]
                                                    for c in manifest["case_id"]}


def test_every_built_in_domain_has_its_own_case_view() -> None:
    for domain in ("imaging", "ehr", "signals", "transactions"):
        provider = case_view_provider(domain)
        assert provider is CASE_VIEWS[domain] and provider is not generic_case_view
        assert provider.__module__ == f"medssl.domains.{domain}"
    assert case_view_provider("genomics") is generic_case_view


def test_a_domain_without_a_reader_gets_a_notice(tmp_path: Path) -> None:
    manifest = pd.DataFrame({"case_id": ["a", "b"], "patient_id": ["p", "q"], "domain": ["genomics", "genomics"]})
    view = view_case(tmp_path, manifest, "b")
    assert view == Notice("The genomics reader is not installed in this medssl, so this case cannot be shown yet.")
    with pytest.raises(KeyError):
        CaseContext.of(tmp_path, manifest, "missing")


def test_a_domain_has_one_case_view() -> None:
    case_view_provider("imaging")  # the built-in providers are registered
    with pytest.raises(ValueError, match="registered twice"):
        register_case_view("imaging")(lambda ctx: Notice("another"))


def test_dicom_ingested_with_voi_is_shown_through_its_voi_window(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), src / "mr.dcm")  # WindowCenter 600 / Width 1600
    assert main(["-q", "ingest", "dicom", str(src), "--out", str(tmp_path / "data"), "--workers", "1", "--voi"]) == 0
    manifest = read_manifest(tmp_path / "data")
    dataset = ImagingDataset(tmp_path / "data", manifest, {"size": 64}, cache=False)
    view = view_case(tmp_path / "data", manifest, manifest["case_id"].iloc[0])
    np.testing.assert_array_equal(_model_input(view, dataset), dataset[0].numpy())


def test_ct_case_offers_the_hounsfield_presets_and_they_give_the_documented_window(tmp_path: Path) -> None:
    """A real CT (pydicom's CT_small.dcm, Modality CT, rescale intercept -1024): the view is in
    Hounsfield units and offers lung W1500/L-600, mediastinum W350/L50, bone W2000/L300 and auto."""
    import pydicom
    from pydicom.data import get_testdata_file

    from medssl.review.case_view import window_level

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "ct.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), src / "mr.dcm")
    assert main(["-q", "ingest", "dicom", str(src), "--out", str(tmp_path / "data"), "--workers", "1"]) == 0
    manifest = read_manifest(tmp_path / "data")
    by_name = {Path(p).name: c for p, c in zip(manifest["path"], manifest["case_id"])}
    ct = view_case(tmp_path / "data", manifest, by_name["ct.dcm"])
    assert isinstance(ct, ImageView) and ct.modality == "CT"
    ds = pydicom.dcmread(src / "ct.dcm")
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(ct.frames[0], hu)
    assert list(ct.presets) == ["auto", "lung", "mediastinum", "bone"]
    assert ct.presets["lung"] == (-600.0, 1500.0) and ct.presets["mediastinum"] == (50.0, 350.0)
    assert ct.presets["bone"] == (300.0, 2000.0)
    lo, hi = np.percentile(hu, [0.5, 99.5])
    assert ct.presets["auto"] == pytest.approx(((lo + hi) / 2, hi - lo))
    # the mediastinum window maps -125 HU and below to black, 225 HU and above to white, linearly between
    grey = window_level(ct.frames[0], *ct.presets["mediastinum"])
    assert (grey[hu <= -125] == 0).all() and (grey[hu >= 225] == 255).all()
    inside = (hu > -125) & (hu < 225)
    np.testing.assert_allclose(grey[inside], np.round((hu[inside] + 125) / 350 * 255), atol=1)
    mr = view_case(tmp_path / "data", manifest, by_name["mr.dcm"])  # no fixed unit: auto only
    assert mr.modality == "MR" and list(mr.presets) == ["auto"]


def test_npz_ingested_with_class_names_labels_cases_by_name(shared_data: Path, tmp_path: Path, capsys) -> None:
    """`--class-names normal,pneumonia`: PneumoniaMNIST's label 1 (pneumonia, its README) becomes the
    name, so a model fine-tuned on it predicts names; a class without a name is a clear error."""
    src = shared_data / "imaging" / "pneumoniamnist_trainval.npz"
    with np.load(src) as archive:
        labels = archive["val_labels"].reshape(-1)
    small = tmp_path / "small.npz"
    with np.load(src) as archive:
        np.savez(small, val_images=archive["val_images"][:40], val_labels=archive["val_labels"][:40])
    assert main(["-q", "ingest", "images", str(small), "--format", "npz", "--class-names", "normal,pneumonia",
                 "--out", str(tmp_path / "named")]) == 0
    manifest = read_manifest(tmp_path / "named")
    assert manifest["label"].tolist() == [["normal", "pneumonia"][int(v)] for v in labels[:40]]
    assert set(manifest["label"]) == {"normal", "pneumonia"}
    assert main(["-q", "ingest", "images", str(small), "--format", "npz", "--class-names", "normal",
                 "--out", str(tmp_path / "short")]) != 0
    assert "class(es) 1 have no name in --class-names (1 given: normal)" in capsys.readouterr().err
    assert main(["-q", "ingest", "images", str(small), "--format", "npz", "--class-names", "a,a",
                 "--out", str(tmp_path / "dup")]) != 0
    assert "needs distinct, non-empty names" in capsys.readouterr().err
    assert not (tmp_path / "short").exists() and not (tmp_path / "dup").exists()
