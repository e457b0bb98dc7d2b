"""`medssl ingest images`: MedMNIST npz arrays and PNG/JPEG folders (with a metadata CSV), on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medssl.cli import main
from medssl.data import read_errors, read_manifest

NPZ = "imaging/pneumoniamnist_trainval.npz"


def test_npz_ingest_gives_4406_labelled_cases_with_their_splits(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / NPZ
    assert main(["ingest", "images", str(src), "--format", "npz", "--out", str(tmp_path)]) == 0
    df = read_manifest(tmp_path)
    assert len(df) == 4406
    assert df["split"].value_counts().to_dict() == {"train": 3882, "val": 524}
    assert (df["domain"] == "imaging").all() and (df["source_format"] == "npz").all()
    assert (df["patient_id"] == df["case_id"]).all()
    with np.load(src) as arrays:
        expected = np.concatenate([arrays["train_labels"][:, 0], arrays["val_labels"][:, 0]])
    row = df.set_index("case_id")
    assert row.loc["val:523", "array_key"] == "val_images" and row.loc["val:523", "array_index"] == 523
    assert row.loc["train:0", "path"] == str(src.resolve())
    np.testing.assert_array_equal(df["label"].to_numpy(), expected)
    assert df["label"].sum() == int(expected.sum()) and set(df["label"]) == {0, 1}
    assert len(read_errors(tmp_path)) == 0


def test_npz_file_needs_format_flag_and_a_bad_npz_is_a_clear_error(shared_data: Path, tmp_path: Path, capsys) -> None:
    assert main(["ingest", "images", str(shared_data / NPZ), "--out", str(tmp_path / "a")]) == 2
    assert "add --format npz" in capsys.readouterr().err
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["ingest", "images", str(junk), "--format", "npz", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "not a readable .npz" in err and "Traceback" not in err


def _real_images(shared_data: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(shared_data / NPZ) as arrays:
        return arrays["val_images"][:n], arrays["val_labels"][:n, 0]


def _write_folder(shared_data: Path, root: Path, n: int) -> pd.DataFrame:
    """``n`` real chest X-rays as PNG (grey, some RGB) and JPEG, 4 images per patient."""
    from PIL import Image

    images, labels = _real_images(shared_data, n)
    rows = []
    for i, (img, label) in enumerate(zip(images, labels)):
        patient = f"P{i // 4:03d}"
        sub = root / patient
        sub.mkdir(parents=True, exist_ok=True)
        if i % 5 == 4:
            name = f"{patient}/img{i}.jpg"
            Image.fromarray(img).save(root / name, quality=95)
        elif i % 5 == 3:
            name = f"{patient}/img{i}.png"
            Image.fromarray(np.stack([img] * 3, axis=-1)).save(root / name)  # RGB copy of a grey image
        else:
            name = f"{patient}/img{i}.png"
            Image.fromarray(img).save(root / name)
        rows.append({"file": name, "patient": patient, "finding": "pneumonia" if label else "normal"})
    return pd.DataFrame(rows)


def test_png_jpeg_folder_with_metadata_rejects_bad_rows_and_goes_on(shared_data: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    meta = _write_folder(shared_data, src, 80)
    (src / "P000" / "img1.png").write_bytes((src / "P000" / "img1.png").read_bytes()[:60])  # truncated PNG
    bad = pd.DataFrame(
        [
            {"file": "P099/missing.png", "patient": "P099", "finding": "normal"},
            {"file": "", "patient": "P098", "finding": "normal"},
        ]
    )
    pd.concat([meta, bad]).to_csv(tmp_path / "meta.csv", index=False)
    code = main(
        ["ingest", "images", str(src), "--metadata", str(tmp_path / "meta.csv"), "--image-col", "file",
         "--patient-col", "patient", "--label-col", "finding", "--out", str(out), "--workers", "2", "--seed", "3"]
    )
    assert code == 0
    df = read_manifest(out)
    assert len(df) == 79 and "P000/img1.png" not in set(df["case_id"])
    errors = read_errors(out)
    assert len(errors) == 3
    reasons = dict(zip(errors["path"], errors["reason"]))
    assert "could not be decoded" in reasons[str(src / "P000" / "img1.png")]
    assert "not found" in reasons[str(src / "P099" / "missing.png")]
    assert any("no image in column 'file'" in r for r in reasons.values())
    row = df.set_index("case_id").loc["P001/img7.png"]
    expected_label = meta.set_index("file").loc["P001/img7.png", "finding"]
    assert (row["patient_id"], row["label"], row["rows"], row["columns"]) == ("P001", expected_label, 28, 28)
    assert df["label"].value_counts().to_dict() == meta[meta["file"] != "P000/img1.png"]["finding"].value_counts().to_dict()
    assert row["path"] == str((src / "P001" / "img7.png").resolve()) and row["source_format"] == "image"
    # patient-level splits on the real output: every patient in exactly one split, all three used
    assert (df.groupby("patient_id")["split"].nunique() == 1).all()
    assert set(df["split"]) == {"train", "val", "test"}
    assert df.groupby("split")["label"].nunique().min() == 2  # stratified: both classes in each split


def test_decoded_png_keeps_exact_pixels_and_rgb_becomes_grey(shared_data: Path, tmp_path: Path) -> None:
    from medssl.data.imaging.images import read_image_pixels

    images, _ = _real_images(shared_data, 5)
    _write_folder(shared_data, tmp_path, 5)
    grey, meta = read_image_pixels(tmp_path / "P000" / "img0.png")
    np.testing.assert_array_equal(grey, images[0].astype(np.float32))
    assert (meta["mode"], meta["rows"], meta["columns"]) == ("L", 28, 28)
    rgb, meta = read_image_pixels(tmp_path / "P000" / "img3.png")
    np.testing.assert_array_equal(rgb, images[3].astype(np.float32))  # equal R=G=B -> same luminance
    assert meta["mode"] == "RGB"
    jpeg, _ = read_image_pixels(tmp_path / "P001" / "img4.jpg")
    assert np.abs(jpeg - images[4]).mean() < 4  # lossy, but close


def test_missing_metadata_column_is_a_clear_error(shared_data: Path, tmp_path: Path, capsys) -> None:
    meta = _write_folder(shared_data, tmp_path / "src", 4)
    meta.to_csv(tmp_path / "meta.csv", index=False)
    code = main(
        ["ingest", "images", str(tmp_path / "src"), "--metadata", str(tmp_path / "meta.csv"),
         "--image-col", "file", "--label-col", "diagnosis", "--out", str(tmp_path / "out")]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "'diagnosis'" in err and "--label-col" in err and "['file', 'patient', 'finding']" in err
    assert not (tmp_path / "out" / "manifest.parquet").exists()


def test_folder_without_metadata_labels_only_when_asked(shared_data: Path, tmp_path: Path) -> None:
    from PIL import Image

    images, labels = _real_images(shared_data, 12)
    for i, (img, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "src" / ("PNEUMONIA" if label else "NORMAL")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i}.png")
    (tmp_path / "src" / "notes.txt").write_text("not an image")
    assert main(["ingest", "images", str(tmp_path / "src"), "--out", str(tmp_path / "a")]) == 0
    plain = read_manifest(tmp_path / "a")
    assert len(plain) == 12 and "label" not in plain.columns
    assert (plain["patient_id"] == plain["case_id"]).all() and plain["case_id"].str.match(r"(NORMAL|PNEUMONIA)/\d+\.png").all()
    assert main(["ingest", "images", str(tmp_path / "src"), "--label-from-folder", "--out", str(tmp_path / "b")]) == 0
    named = read_manifest(tmp_path / "b").set_index("case_id")
    for i, label in enumerate(labels):
        folder = "PNEUMONIA" if label else "NORMAL"
        assert named.loc[f"{folder}/{i}.png", "label"] == folder


def test_exif_orientation_is_applied(shared_data: Path, tmp_path: Path) -> None:
    from PIL import Image

    from medssl.data.imaging.images import read_image_pixels

    images, _ = _real_images(shared_data, 2)
    wide = Image.fromarray(np.concatenate([images[0], images[1]], axis=1))  # 28 rows x 56 columns
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: "rotate 90 degrees clockwise to display"
    wide.save(tmp_path / "tagged.jpg", exif=exif, quality=95)
    pixels, meta = read_image_pixels(tmp_path / "tagged.jpg")
    assert pixels.shape == (56, 28) and (meta["rows"], meta["columns"]) == (56, 28)
    upright = np.rot90(np.concatenate([images[0], images[1]], axis=1), k=-1)
    assert np.abs(pixels - upright).mean() < 4
