"""Each domain's preset (configs/<domain>.yaml) uses the method the README's leaderboard names as
that domain's winner, serves the domain, and pretrains from the CLI on the bundled sample."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import medssl
from medssl.checkpoints import load_checkpoint
from medssl.cli import main
from medssl.config import load_config
from medssl.train.pretrain_config import PretrainConfig

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "datasets"
# the README's winners table: | domain | **method** | `configs/preset.yaml` | medssl domain | ...
WINNER_ROW = re.compile(r"^\| (\w+) \| \*\*(\w+)\*\* \| `configs/(\w+\.yaml)` \| (\w+) \|", re.M)
INGEST = {
    "imaging": ["images", str(SAMPLES / "imaging" / "pneumoniamnist_sample.npz"), "--format", "npz"],
    "ehr": ["ehr", str(SAMPLES / "ehr" / "physionet2012_sample" / "set-a"), "--format", "physionet2012",
            "--outcomes", str(SAMPLES / "ehr" / "physionet2012_sample" / "Outcomes-a.txt")],
    "signals": ["signals", str(SAMPLES / "signals" / "mitdb_sample"), "--format", "wfdb"],
    "transactions": ["transactions", str(SAMPLES / "transactions" / "ulb_creditcard_sample.csv"),
                     "--id-col", "transaction_id", "--label-col", "Class"],
}


def _winners() -> list[tuple[str, str, str, str]]:
    return WINNER_ROW.findall((REPO / "README.md").read_text())


def test_readme_names_one_winner_and_preset_per_leaderboard_domain() -> None:
    rows = _winners()
    assert sorted(r[0] for r in rows) == ["mitbih", "physionet2012", "pneumoniamnist", "ulb"]
    assert sorted(r[3] for r in rows) == sorted(INGEST)


@pytest.mark.parametrize("row", _winners(), ids=lambda r: r[0])
def test_domain_preset_uses_the_winner_and_pretrains(row: tuple[str, str, str, str], tmp_path: Path) -> None:
    board_name, winner, preset, domain = row
    cfg = load_config(PretrainConfig, REPO / "configs" / preset)
    assert cfg.method == winner, f"configs/{preset} pretrains {cfg.method}, the leaderboard's {board_name} winner is {winner}"
    served = {m["name"]: m["domains"] for m in medssl.list_methods()}[winner]
    assert served == "any" or domain in [d.strip() for d in served.split(",")]
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["-q", "ingest", *INGEST[domain], "--out", str(data)]) == 0
    assert main(["-q", "pretrain", "--data", str(data), "--out", str(run), "--config", str(REPO / "configs" / preset),
                 "--max-steps", "2", "--batch-size", "16", "--limit-cases", "64"]) == 0
    ckpt = load_checkpoint(run / "checkpoint.pt")  # weights_only load
    assert ckpt.meta["method"] == winner and ckpt.meta["global_step"] == 2
