"""Image, EHR and signal ingest called from Python (no argparse) on the bundled samples in datasets/.

Each ``ingest_*`` takes ``src``/``out`` as str or Path and a frozen options object with the CLI's
defaults, writes the data dir and returns the counts the CLI logs. Bad option values raise the
same medssl errors (and messages) as the command line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from medssl.cli import build_parser
from medssl.data import read_errors, read_manifest
from medssl.data.ehr import EhrIngestOptions, GridStore, ingest_ehr
from medssl.data.imaging.ingest import ImageIngestOptions, ingest_images
from medssl.data.signals import SignalIngestOptions, ingest_signals, load_windows
from medssl.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
NPZ = REPO / "datasets/imaging/pneumoniamnist_sample.npz"
P12 = REPO / "datasets/ehr/physionet2012_sample"
MITDB = REPO / "datasets/signals/mitdb_sample"
MANIFEST_CORE = {"case_id", "patient_id", "domain", "split", "label", "source_format"}


# --- images ---------------------------------------------------------------------------------------

def test_ingest_images_npz_from_python(tmp_path: Path) -> None:
    out = tmp_path / "img"
    summary = ingest_images(str(NPZ), str(out), ImageIngestOptions(format="npz"))
    m = read_manifest(out)
    assert len(m) == 520 and MANIFEST_CORE | {"path", "array_key", "array_index"} <= set(m.columns)
    assert m["split"].value_counts().to_dict() == {"train": 400, "val": 120}
    assert (m["domain"] == "imaging").all() and (m["source_format"] == "npz").all()
    assert m["label"].value_counts().to_dict() == {0: 260, 1: 260}
    with np.load(NPZ) as arrays:
        np.testing.assert_array_equal(m["label"].to_numpy(),
                                      np.concatenate([arrays["train_labels"][:, 0], arrays["val_labels"][:, 0]]))
    assert summary == {"cases": 520, "patients": 520, "splits": {"train": 400, "val": 120}, "labelled": True,
                       "rejected": 0, "manifest": out / "manifest.parquet", "errors_csv": out / "errors.csv"}
    assert len(read_errors(out)) == 0


def test_ingest_images_folder_with_default_options_draws_splits(tmp_path: Path) -> None:
    from PIL import Image

    src = tmp_path / "pngs"
    src.mkdir()
    with np.load(NPZ) as arrays:
        images = arrays["val_images"][:20]
    for i, img in enumerate(images):
        Image.fromarray(img).save(src / f"x{i:02d}.png")
    (src / "broken.png").write_bytes(b"\x89PNG not an image")
    summary = ingest_images(src, tmp_path / "out", dataclasses.replace(ImageIngestOptions(), workers=1))
    m = read_manifest(tmp_path / "out")
    assert len(m) == 20 and summary["cases"] == 20 and summary["rejected"] == 1 and not summary["labelled"]
    assert set(m["split"]) == {"train", "val", "test"} and summary["splits"] == m["split"].value_counts().to_dict()
    assert (m["patient_id"] == m["case_id"]).all() and (m["source_format"] != "npz").all()
    assert read_errors(tmp_path / "out")["path"].str.endswith("broken.png").all()


def test_image_options_bad_values_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--format npz takes labels and splits from the arrays"):
        ImageIngestOptions(format="npz", label_col="finding")
    with pytest.raises(DataError, match="--workers 0 must be at least 1"):
        ImageIngestOptions(workers=0)
    with pytest.raises(DataError, match="exclude each other"):
        ImageIngestOptions(metadata="labels.csv", label_from_folder=True)
    with pytest.raises(DataError, match="split fractions val=0.6, test=0.5"):
        ImageIngestOptions(val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ConfigError, match="unknown image format 'tiff'"):
        ImageIngestOptions(format="tiff")
    with pytest.raises(DataError, match="add --format npz"):
        ingest_images(NPZ, tmp_path / "out")  # default format is a folder
    assert not (tmp_path / "out").exists()


# --- EHR ------------------------------------------------------------------------------------------

def test_ingest_ehr_physionet2012_from_python(tmp_path: Path) -> None:
    out = tmp_path / "ehr"
    opts = EhrIngestOptions(format="physionet2012", outcomes=str(P12 / "Outcomes-a.txt"))
    assert opts.outcomes == P12 / "Outcomes-a.txt"  # stored as a Path
    summary = ingest_ehr(str(P12 / "set-a"), out, opts)
    m = read_manifest(out)
    assert len(m) == 60 and MANIFEST_CORE | {"grid_row", "n_observations"} <= set(m.columns)
    assert m["split"].value_counts().to_dict() == {"train": 42, "val": 9, "test": 9}
    assert (m["domain"] == "ehr").all() and (m["source_format"] == "physionet2012").all()
    assert "132539" in set(m["case_id"]) and set(m["label"]) == {"0", "1"}
    grid = GridStore.load(out)
    assert grid.values.shape[0] == 60 and grid.values.shape[-1] == 48
    assert summary["cases"] == 60 and summary["patients"] == 60 and summary["bins"] == 48
    assert summary["splits"] == {"train": 42, "val": 9, "test": 9}
    assert summary["variables"] == grid.values.shape[1] and summary["errors"] == len(read_errors(out))
    assert summary["measurements"] > summary["dropped"] > 0


def test_ehr_options_bad_values_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--max-variables must be at least 1"):
        EhrIngestOptions(format="mimic3", max_variables=0)
    with pytest.raises(DataError, match="must be a positive multiple of --step-hours"):
        EhrIngestOptions(format="physionet2012", hours=48, step_hours=0)
    with pytest.raises(ConfigError, match="unknown EHR format 'fhir'"):
        EhrIngestOptions(format="fhir")
    with pytest.raises(ConfigError, match="needs options=EhrIngestOptions"):
        ingest_ehr(P12 / "set-a", tmp_path / "out")
    with pytest.raises(DataError, match="--format csv needs --patient-col, --time-col"):
        ingest_ehr(P12 / "Outcomes-a.txt", tmp_path / "out", EhrIngestOptions(format="csv"))


# --- signals --------------------------------------------------------------------------------------

def test_ingest_signals_wfdb_from_python(tmp_path: Path) -> None:
    out = tmp_path / "sig"
    summary = ingest_signals(str(MITDB), str(out), SignalIngestOptions(format="wfdb", records="101"))
    m = read_manifest(out)
    assert len(m) == 1864 and MANIFEST_CORE | {"record", "fs", "row"} <= set(m.columns)
    assert m["split"].value_counts().to_dict() == {"train": 1864}  # one record = one patient
    assert (m["domain"] == "signals").all() and set(m["patient_id"]) == {"101"}
    assert m["label"].value_counts().to_dict() == {"N": 1859, "S": 3, "Q": 2}
    assert load_windows(out).shape == (1864, 2, 252)
    assert summary == {"cases": 1864, "channels": 2, "samples": 252, "patients": 1, "splits": {"train": 1864},
                       "errors": len(read_errors(out))}


def test_signal_options_bad_values_are_clear_errors(tmp_path: Path) -> None:
    assert SignalIngestOptions(format="wfdb", records=" 101, 106 ,").records == ("101", "106")
    with pytest.raises(DataError, match="--format csv needs --time-col"):
        SignalIngestOptions(format="csv", window=10)
    with pytest.raises(DataError, match="--window must be at least 2"):
        SignalIngestOptions(format="csv", time_col="t", window=1)
    with pytest.raises(ConfigError, match="unknown signal format 'edf'"):
        SignalIngestOptions(format="edf")
    with pytest.raises(DataError, match=r"record\(s\) \['999'\] have no .hea file"):
        ingest_signals(MITDB, tmp_path / "out", SignalIngestOptions(format="wfdb", records=("999",)))



# --- split fractions (EHR and signals, as images and transactions) ---------------------------------

def test_ehr_and_signal_split_fractions_from_python_and_the_cli(tmp_path: Path) -> None:
    ehr = EhrIngestOptions(format="physionet2012", outcomes=P12 / "Outcomes-a.txt", val_fraction=0.0, test_fraction=0.25)
    summary = ingest_ehr(P12 / "set-a", tmp_path / "ehr", ehr)
    m = read_manifest(tmp_path / "ehr")
    assert set(m["split"]) == {"train", "test"} and summary["splits"] == {"train": 45, "test": 15}
    sig = SignalIngestOptions(format="wfdb", val_fraction=0.0, test_fraction=0.5, seed=3)
    ingest_signals(MITDB, tmp_path / "sig", sig)
    per_record = read_manifest(tmp_path / "sig").groupby("patient_id")["split"].nunique()
    assert (per_record == 1).all()  # a record (patient) lies on one side only
    assert set(read_manifest(tmp_path / "sig")["split"]) <= {"train", "test"}
    for options in (EhrIngestOptions, SignalIngestOptions):
        with pytest.raises(DataError, match="split fractions val=0.6, test=0.5"):
            options(format="ts" if options is SignalIngestOptions else "mimic3",
                    val_fraction=0.6, test_fraction=0.5)
    parser = build_parser()
    from medssl.commands import ingest_ehr as ehr_cmd
    from medssl.commands import ingest_signals as sig_cmd

    args = parser.parse_args(["ingest", "ehr", "x", "--format", "mimic3", "--out", "y", "--val-fraction", "0",
                              "--test-fraction", "0.25", "--seed", "2"])
    assert ehr_cmd.options_from_args(args) == EhrIngestOptions(format="mimic3", val_fraction=0.0, test_fraction=0.25, seed=2)
    args = parser.parse_args(["ingest", "signals", "x", "--format", "ts", "--out", "y", "--test-fraction", "0.3"])
    assert sig_cmd.options_from_args(args) == SignalIngestOptions(format="ts", test_fraction=0.3)


# --- all three ------------------------------------------------------------------------------------

def test_options_are_frozen_and_default_like_the_cli() -> None:
    from medssl.commands import ingest_ehr as ehr_cmd
    from medssl.commands import ingest_images as img_cmd
    from medssl.commands import ingest_signals as sig_cmd

    parser = build_parser()
    args = parser.parse_args(["ingest", "images", "x", "--out", "y"])
    assert img_cmd.options_from_args(args) == ImageIngestOptions()
    args = parser.parse_args(["ingest", "ehr", "x", "--format", "mimic3", "--out", "y"])
    assert ehr_cmd.options_from_args(args) == EhrIngestOptions(format="mimic3")
    args = parser.parse_args(["ingest", "signals", "x", "--format", "ts", "--out", "y"])
    assert sig_cmd.options_from_args(args) == SignalIngestOptions(format="ts")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ImageIngestOptions().seed = 1  # type: ignore[misc]


def test_no_argparse_in_the_data_layer() -> None:
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "medssl/data").rglob("*.py")
                 if "argparse" in p.read_text(encoding="utf-8")]
    assert offenders == []
