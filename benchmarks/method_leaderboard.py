"""Which SSL method to use for each domain: a leaderboard measured the way a user runs medssl.

For each domain (PneumoniaMNIST, PhysioNet 2012, MIT-BIH DS1, ULB transactions) and every
registered method that serves it (``medssl.list_methods()``), with the domain's usual encoder
and the same pretraining budget (``--minutes`` of training or ``--steps`` optimizer steps at
``--batch`` cases, whichever ends first; the budget and each cell's steps are in the JSON):

1. ``medssl.ingest`` once (val split kept: the leaderboard is read on val, never on test);
2. ``medssl.pretrain`` (the public API) with ``method``, the domain's encoder, the budget, seed 0;
3. ``medssl finetune`` (the CLI, shipped defaults: mode auto = the domain's few-label recipe) at
   1% and 10% of the train labels, seeds 0..N-1; the figure is the validation metric written to
   metrics.json (AUROC; macro-F1 for beat classes);
4. two baseline rows with the same finetune calls: ``random_init`` (the encoder as initialised:
   pretraining for one step at a learning rate of 1e-12) and ``supervised_scratch`` (that
   random encoder trained end to end on the same labels: ``medssl finetune --mode full``, its
   default 30 epochs capped at the pretraining budget of ``--steps`` optimizer steps).

The winner of a domain is the method with the highest mean validation metric at 1% (ties: at 10%).
Writes benchmarks/results/method_leaderboard[_quick].{json,csv,png} and prints the table.
``--quick``: every cell with a tiny budget (5 steps, one seed, 10% only): a check that each
(domain, method) cell runs, not a measurement; the README's table comes from the full run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"
BASELINES = ("random_init", "supervised_scratch")


@dataclass(frozen=True)
class Domain:
    """One leaderboard domain: how to ingest it, its encoder and its metric."""

    name: str
    kind: str  # medssl.ingest kind
    src: Path
    ingest: dict[str, Any]
    domain: str  # the medssl domain its methods must serve
    encoder: str
    metric: str  # key of metrics.json "validation"
    pretrain: dict[str, Any] = field(default_factory=dict)


DOMAINS = (
    Domain("pneumoniamnist", "images", SHARED / "imaging" / "pneumoniamnist_trainval.npz", {"format": "npz"},
           "imaging", "small_cnn", "auroc"),
    Domain("physionet2012", "ehr", SHARED / "ehr" / "physionet2012" / "set-a",
           {"format": "physionet2012", "outcomes": SHARED / "ehr" / "physionet2012" / "Outcomes-a.txt"},
           "ehr", "", "auroc"),
    # 12 of DS1's 22 records (sorted names), 3 of them val: every method's frozen-encoder pass over the
    # train beats then fits the 60-minute budget on 2 cores; DS1's test records are never read (val only)
    Domain("mitbih", "signals", SHARED / "signals" / "mitdb_ds1",
           {"format": "wfdb", "max_records": 12, "val_fraction": 0.25, "test_fraction": 0.0}, "signals", "", "macro_f1"),
    Domain("ulb", "transactions", SHARED / "transactions" / "ulb_creditcard_a.csv",
           {"id_col": "transaction_id", "label_col": "Class"}, "transactions", "", "auroc"),
)


def serving(domain: str) -> list[str]:
    """Registered methods that serve ``domain`` ("any" or a list naming it)."""
    import medssl

    return [r["name"] for r in medssl.list_methods()
            if r["domains"] == "any" or domain in [d.strip() for d in r["domains"].split(",")]]


def pretrain(d: Domain, data: Path, run: Path, method: str, steps: int, minutes: float | None, batch: int,
             lr: float | None) -> tuple[Path, float, int]:
    """``medssl.pretrain`` of one cell (cached by its config); the checkpoint, seconds and steps done."""
    import medssl
    from medssl.checkpoints import load_checkpoint

    cfg: dict[str, Any] = {"method": method, "max_steps": steps, "max_minutes": minutes, "epochs": 10_000,
                           "batch_size": batch, "seed": 0, "accelerator": "cpu", **d.pretrain}
    if d.encoder:
        cfg["encoder"] = d.encoder
    if lr is not None:
        cfg["lr"] = lr
    done = run / "DONE.json"
    if done.is_file() and json.loads(done.read_text())["config"] == cfg:
        old = json.loads(done.read_text())
        return run / "checkpoint.pt", old["seconds"], old["steps"]
    shutil.rmtree(run, ignore_errors=True)
    t = time.perf_counter()
    ckpt = medssl.pretrain(data, run, config=cfg)
    seconds = time.perf_counter() - t
    steps_done = int(load_checkpoint(ckpt).meta["global_step"])
    done.write_text(json.dumps({"config": cfg, "seconds": seconds, "steps": steps_done}))
    return Path(ckpt), seconds, steps_done


def scratch_epochs(data: Path, fraction: float, steps: int, batch: int) -> int:
    """``--epochs`` for ``supervised_scratch``: ``medssl finetune --mode full``'s default (30 epochs)
    capped at the pretraining budget of ``steps`` optimizer steps (an epoch is ``max(10, n // batch)``
    steps for ``n`` labelled cases, as in medssl/train/full.py)."""
    import pandas as pd

    from medssl.train.finetune_config import FinetuneConfig

    cfg = FinetuneConfig()
    m = pd.read_parquet(data / "manifest.parquet", columns=["split", "label"])
    n = round(fraction * int(((m["split"] == "train") & m["label"].notna()).sum()))
    per_epoch = max(cfg.min_steps_per_epoch, n // batch)
    return max(1, min(cfg.epochs, steps // per_epoch))


def finetune(ckpt: Path, data: Path, out: Path, fraction: float, seed: int, metric: str, mode: str | None,
             epochs: int | None = None) -> float:
    """``medssl finetune`` with shipped defaults (or ``--mode``, ``--epochs``); the validation ``metric``."""
    from medssl.cli import main as cli

    args = ["-q", "finetune", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out),
            "--label-fraction", str(fraction), "--seed", str(seed), "--overwrite"]
    if mode:
        args += ["--mode", mode]
    if epochs:
        args += ["--epochs", str(epochs)]
    code = cli(args)
    if code != 0:
        raise RuntimeError(f"medssl {' '.join(args)} exited {code}")
    return float(json.loads((out / "metrics.json").read_text())["validation"][metric])


def _plot(summary: Any, path: Path) -> None:
    """One panel per domain: mean validation metric per method, one bar group per label fraction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(summary["domain"].unique())
    fig, axes = plt.subplots(len(domains), 1, figsize=(10, 3 * max(1, len(domains))), squeeze=False)
    for ax, dom in zip(axes[:, 0], domains):
        wide = summary[summary["domain"] == dom].pivot(index="method", columns="fraction", values="mean")
        wide.plot.bar(ax=ax, rot=45)
        ax.set_title(dom, loc="left")
        ax.set_ylabel("validation metric")
        ax.legend(title="labels", labels=[f"{f:.0%}" for f in wide.columns], fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/method_leaderboard"))
    parser.add_argument("--domains", default=",".join(d.name for d in DOMAINS))
    parser.add_argument("--methods", default="", help="only these methods (comma list; default every serving one)")
    parser.add_argument("--steps", type=int, default=300, help="at most this many pretraining steps per method")
    parser.add_argument("--minutes", type=float, default=1 / 3, help="at most this much pretraining time per method")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fractions", default="0.01,0.1")
    parser.add_argument("--quick", action="store_true", help="5 steps, 1 seed, 10%% only: checks that every cell runs")
    parser.add_argument("--from-csv", type=Path, help="rebuild the JSON, PNG and markdown table from this CSV")
    args = parser.parse_args()
    if args.from_csv:
        import pandas as pd

        old = RESULTS / f"{args.from_csv.stem}.json"
        meta = {k: v for k, v in json.loads(old.read_text()).items()
                if k not in ("winners", "summary", "split", "winner_rule")} if old.is_file() else {}
        report(pd.read_csv(args.from_csv), meta, args.from_csv.stem)
        return
    if args.quick:
        args.steps, args.minutes, args.seeds, args.fractions = 5, None, 1, "0.1"
    import pandas as pd

    import medssl

    fractions = [float(f) for f in args.fractions.split(",")]
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    for d in [d for d in DOMAINS if d.name in args.domains.split(",")]:
        data = args.work / d.name / "data"
        if not (data / "manifest.parquet").is_file():
            medssl.ingest(d.kind, d.src, data, **d.ingest)
        methods = [m for m in serving(d.domain) if not args.methods or m in args.methods.split(",")]
        cells = [(m, m, None, None) for m in methods] + [("random_init", "simclr", 1e-12, None),
                                                         ("supervised_scratch", "simclr", 1e-12, "full")]
        for row_name, method, lr, mode in cells:
            steps = 1 if lr is not None else args.steps
            try:
                ckpt, seconds, steps_done = pretrain(d, data, args.work / d.name / f"pre_{'random_init' if lr else method}",
                                                     method, steps, args.minutes if lr is None else None, args.batch, lr)
            except Exception as exc:  # noqa: BLE001 - a cell that cannot run is reported, the board goes on
                rows.append({"domain": d.name, "method": row_name, "error": f"{type(exc).__name__}: {exc}"})
                print(f"{d.name:15s} {row_name:18s} pretrain failed: {exc}", flush=True)
                continue
            for fraction in fractions:
                for seed in range(args.seeds):
                    out = args.work / d.name / f"ft_{row_name}_{fraction}_{seed}"
                    try:
                        epochs = scratch_epochs(data, fraction, args.steps, args.batch) if mode == "full" else None
                        value = finetune(ckpt, data, out, fraction, seed, d.metric, mode, epochs)
                        error = None
                    except Exception as exc:  # noqa: BLE001
                        value, error = float("nan"), f"{type(exc).__name__}: {exc}"
                    rows.append({"domain": d.name, "method": row_name, "fraction": fraction, "seed": seed,
                                 "metric": d.metric, "value": value, "pretrain_steps": steps_done,
                                 "pretrain_s": round(seconds, 1), "error": error})
                    print(f"{d.name:15s} {row_name:18s} {fraction:5.0%} seed {seed}: {d.metric} {value:.3f} "
                          f"(pretrain {steps_done} steps, {seconds:.0f} s; {time.perf_counter() - started:.0f} s in)", flush=True)
    name = "method_leaderboard" + ("_quick" if args.quick else "")
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "budget": {"pretrain_max_steps": args.steps, "pretrain_max_minutes": args.minutes, "batch_size": args.batch,
                   "encoder": "each domain's default",
                   "data": {d.name: {"src": str(d.src.relative_to(REPO.parent)), **{k: str(v) for k, v in d.ingest.items()}}
                            for d in DOMAINS}},
        "machine": {"cores": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg()[0]},
        "seeds": args.seeds, "fractions": fractions, "seconds": round(time.perf_counter() - started),
    }
    report(pd.DataFrame(rows), meta, name)


def report(table: Any, meta: dict[str, Any], name: str) -> None:
    """Summary, winners, JSON, CSV, PNG and a markdown table (``name``.md) from the per-cell ``table``."""
    summary = (table.dropna(subset=["value"]).groupby(["domain", "method", "fraction"])["value"]
               .agg(["mean", "std", "count"]).reset_index())
    winners = {}
    for dom, part in summary[~summary["method"].isin(BASELINES)].groupby("domain"):
        wide = part.pivot(index="method", columns="fraction", values="mean")
        winners[dom] = str(wide.sort_values(sorted(wide.columns), ascending=False).index[0])
    RESULTS.mkdir(parents=True, exist_ok=True)
    table.to_csv(RESULTS / f"{name}.csv", index=False)
    (RESULTS / f"{name}.json").write_text(json.dumps({
        **meta, "split": "val (metrics.json validation of medssl finetune)",
        "winner_rule": "highest mean validation metric at the smallest fraction, ties by the next",
        "winners": winners, "summary": summary.to_dict("records"),
    }, indent=2))
    _plot(summary, RESULTS / f"{name}.png")
    (RESULTS / f"{name}.md").write_text(_markdown(table, summary, winners))
    print(summary.to_string(index=False))
    print("winners:", winners)


def _markdown(table: Any, summary: Any, winners: dict[str, str]) -> str:
    """One row per (domain, method): mean +- std over seeds per fraction, steps, errors; winner in bold."""
    fractions = sorted(summary["fraction"].unique())
    head = "| domain | method | " + " | ".join(f"{f:.0%} labels" for f in fractions) + " | pretrain steps |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for dom, part in summary.groupby("domain", sort=False):
        cells = table[table["domain"] == dom]
        order = part[part["fraction"] == fractions[0]].sort_values("mean", ascending=False)["method"].tolist()
        for method in order:
            values = []
            for f in fractions:
                row = part[(part["method"] == method) & (part["fraction"] == f)]
                values.append(f"{row['mean'].iloc[0]:.3f} ± {row['std'].iloc[0]:.3f}" if len(row) else "-")
            steps = cells.loc[cells["method"] == method, "pretrain_steps"].dropna()
            label = f"**{method}** (winner)" if winners.get(dom) == method else method
            lines.append(f"| {dom} ({cells['metric'].iloc[0]}) | {label} | " + " | ".join(values)
                         + f" | {int(steps.iloc[0]) if len(steps) else '-'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
