"""`medssl ingest images`: MedMNIST npz arrays and PNG/JPEG folders (with a metadata CSV), on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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
