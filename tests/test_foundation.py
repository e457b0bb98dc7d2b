"""Registry, config, checkpoints, manifest, splits and the CLI's error contract."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medssl.checkpoints import Checkpoint, file_sha256, load_checkpoint, save_checkpoint
from medssl.cli import main
from medssl.config import StrictConfig, load_config
from medssl.data import ErrorLog, assign_patient_splits, read_errors, read_manifest, write_manifest
from medssl.errors import CheckpointError, ConfigError, DataError, UnknownNameError
from medssl.registry import Registry


def test_registry_did_you_mean() -> None:
    reg: Registry[object] = Registry("encoder")
    reg.register("resnet18")(lambda **kw: ("r18", kw))
    assert reg.create("resnet18", a=1) == ("r18", {"a": 1})
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet18'"):
        reg.get("resnet81")


class _Optim(StrictConfig):
    lr: float = 0.1


class _Cfg(StrictConfig):
    epochs: int = 3
    optim: _Optim = _Optim()


def test_config_yaml_overrides_and_unknown_keys(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 5\noptim:\n  lr: 0.5\n")
    cfg = load_config(_Cfg, p, epochs=None, **{"optim.lr": 0.25})
    assert (cfg.epochs, cfg.optim.lr) == (5, 0.25)
    p.write_text("epoch: 5\n")
    with pytest.raises(ConfigError, match="epoch"):
        load_config(_Cfg, p)


def _ckpt() -> Checkpoint:
    return Checkpoint(
        kind="encoder",
        meta={"encoder": {"name": "x", "kwargs": {"in_channels": 1}}, "domain": "imaging"},
        states={"encoder": {"w": torch.arange(6.0).reshape(2, 3)}},
        tensors={"mean": torch.tensor([0.5])},
    )


def test_checkpoint_roundtrip_weights_only(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", _ckpt())
    raw = torch.load(path, weights_only=True)  # plain containers only
    assert raw["kind"] == "encoder"
    back = load_checkpoint(path, expect_kind="encoder")
    assert torch.equal(back.states["encoder"]["w"], torch.arange(6.0).reshape(2, 3))
    assert back.meta["encoder"]["kwargs"] == {"in_channels": 1}
    assert len(file_sha256(path)) == 16
    with pytest.raises(CheckpointError, match="needs a 'model'"):
        load_checkpoint(path, expect_kind="model")


def test_checkpoint_tampered_and_foreign_files_refused(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", _ckpt())
    raw = torch.load(path, weights_only=True)
    raw["states"]["encoder"]["w"][0, 0] = 42.0
    torch.save(raw, tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="integrity"):
        load_checkpoint(tmp_path / "t.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a medssl checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    # junk of several shapes: each makes torch's unpickler fail differently (BadZipFile, struct.error, ...)
    for n, content in enumerate([b"not a zip file at all", b"junk", b"not a checkpoint", b"\x80\x02", b"PK\x03\x04junk", b""]):
        (tmp_path / f"junk{n}.pt").write_bytes(content)
        with pytest.raises(CheckpointError, match="not a readable") as junk:
            load_checkpoint(tmp_path / f"junk{n}.pt")
        msg = str(junk.value).replace(str(tmp_path / f"junk{n}.pt"), "")
        assert len(msg) < 260 and "\n" not in msg  # one short line for the CLI


def test_manifest_contract(tmp_path) -> None:
    df = pd.DataFrame({"case_id": [1, 2], "patient_id": ["a", "b"], "domain": "imaging"})
    write_manifest(df, tmp_path)
    back = read_manifest(tmp_path)
    assert back["case_id"].tolist() == ["1", "2"]
    with pytest.raises(DataError, match="duplicate case_id"):
        write_manifest(pd.concat([df, df]), tmp_path / "dup")
    with pytest.raises(DataError, match="patient_id"):
        write_manifest(df.drop(columns="patient_id"), tmp_path / "nopat")
    with pytest.raises(DataError, match="medssl ingest"):
        read_manifest(tmp_path / "nowhere")
    log = ErrorLog()
    log.add("x.dcm", "truncated\nfile")
    log.write(tmp_path)
    assert read_errors(tmp_path).to_dict("records") == [{"path": "x.dcm", "reason": "truncated file"}]


def test_patient_splits_never_share_a_patient() -> None:
    rng = np.random.default_rng(0)
    patients = [f"p{i}" for i in range(60)]
    rows = [(f"c{i}", p, int(p[1:]) % 2) for i, p in enumerate(rng.choice(patients, 400))]
    df = pd.DataFrame(rows, columns=["case_id", "patient_id", "label"])
    split = assign_patient_splits(df, 0.2, 0.2, seed=1)
    assert set(split) == {"train", "val", "test"}
    per_patient = df.assign(split=split).groupby("patient_id")["split"].nunique()
    assert (per_patient == 1).all()
    # stratified: each split holds both classes
    assert (df.assign(split=split).groupby("split")["label"].nunique() == 2).all()
    assert split.equals(assign_patient_splits(df, 0.2, 0.2, seed=1))  # deterministic



def test_cli_threads_option_sets_torch_threads(tmp_path: Path, capsys) -> None:
    import torch

    before = torch.get_num_threads()
    db = f"sqlite:///{tmp_path / 'r.db'}"
    try:
        torch.set_num_threads(3)
        assert main(["--threads", "1", "users", "list", "--db", db]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert main(["--threads", "0", "users", "list", "--db", db]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err


def test_cli_version_and_bad_input(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    # the exact version, read independently from pyproject.toml
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert capsys.readouterr().out.strip() == f"medssl {project['version']}"


def test_cli_and_scoring_start_without_heavy_optional_imports() -> None:
    """`medssl --help`, and the scoring path of a small-image model, load neither MONAI, torchvision,
    scikit-learn nor SQLAlchemy: each costs up to seconds at start-up, and none is needed there."""
    import subprocess
    import sys

    code = (
        "import sys, medssl.cli\n"
        "medssl.cli.build_parser()\n"
        "import medssl.scoring.job, medssl.anomaly, medssl.encoders.builtin\n"
        "from medssl.data import get_domain\n"
        "get_domain('imaging')\n"
        "from medssl.encoders.registry import create_encoder\n"
        "from medssl.anomaly import create_scorer\n"
        "import torch\n"
        "create_scorer('knn').fit(torch.randn(20, 4))\n"
        "create_encoder('small_cnn', in_channels=1)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'monai', 'torchvision', 'sklearn', 'sqlalchemy', 'argon2', 'lightning'}))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]", run.stdout
