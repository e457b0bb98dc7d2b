"""``medssl demo``: the whole loop on the bundled sample data, then the review app.

For each domain of ``datasets/`` (chest X-rays, ICU stays, ECG beats, card transactions):
ingest -> pretrain briefly (no labels) -> fine-tune on a few labels (where the sample has them)
-> score. Then a demo reviewer is created (name and password printed) and the app is served.
Every step is an ordinary ``medssl`` command, so the demo doubles as a worked example: the
commands it runs are printed as it goes.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from medssl.commands.app import check_port_free
from medssl.errors import DataError

log = logging.getLogger(__name__)

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "datasets"


@dataclass
class DemoDomain:
    """The commands the demo runs for one domain (paths relative to the domain's folder)."""

    name: str
    ingest: list[str]
    pretrain: list[str]
    finetune: list[str] | None = None
    score: list[str] = field(default_factory=lambda: ["--flag-top", "20"])


def demo_domains(samples: Path, epochs: int) -> list[DemoDomain]:
    """The bundled-sample pipeline: one ``DemoDomain`` per data kind."""
    ep = ["--epochs", str(epochs)]
    return [
        DemoDomain(
            "imaging",
            ["images", str(samples / "imaging" / "pneumoniamnist_sample.npz"), "--format", "npz",
             "--class-names", "normal,pneumonia"],  # MedMNIST: label 1 = pneumonia
            ["--method", "simclr", "--encoder", "small_cnn", "--batch-size", "64", *ep],
            ["--label-fraction", "0.1"],  # mode auto: 20 labels a class, so the linear probe (views_or_probe)
        ),
        DemoDomain(
            "transactions",
            ["transactions", str(samples / "transactions" / "ulb_creditcard_sample.csv"),
             "--id-col", "transaction_id", "--label-col", "Class"],
            ["--config", str(samples.parent / "configs" / "transactions_scarf.yaml"), "--batch-size", "128", *ep],
            ["--shots", "10"],  # mode auto: the transactions few-label recipe
        ),
        DemoDomain(
            "ehr",
            ["ehr", str(samples / "ehr" / "physionet2012_sample" / "set-a"), "--format", "physionet2012",
             "--outcomes", str(samples / "ehr" / "physionet2012_sample" / "Outcomes-a.txt")],
            ["--method", "simclr", "--batch-size", "16", *ep],
        ),
        DemoDomain(
            "signals",
            ["signals", str(samples / "signals" / "mitdb_sample"), "--format", "wfdb"],
            ["--method", "simclr", "--batch-size", "128", "--limit-cases", "1024", *ep],
        ),
    ]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run the whole loop on the bundled sample data, then open the review app",
        description="Run ingest -> pretrain -> fine-tune -> score on the small real samples in "
        "datasets/ (chest X-rays, ICU stays, an ECG record, card transactions), create a demo "
        "reviewer, and serve the review app on http://127.0.0.1:8501. The whole run took about 1 minute "
        "(measured 2026-12-02 on 2 idle CPU cores, no GPU; 3 minutes beside other jobs). Every command it runs "
        "is printed, so you can repeat any step on your own data.",
    )
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for everything the demo writes (default demo_out/)")
    parser.add_argument("--epochs", type=int, default=3, help="pretraining epochs per domain (default 3)")
    parser.add_argument("--domains", default="imaging,transactions,ehr,signals",
                        help="comma-separated domains to run (default: all four)")
    parser.add_argument("--port", type=int, default=8501, help="port of the review app (default 8501)")
    parser.add_argument("--no-serve", action="store_true", help="stop after scoring; do not start the app")
    parser.set_defaults(func=run)


def _medssl(argv: list[str]) -> int:
    from medssl.commands.main import main
    from medssl.progress import is_quiet

    print(f"\n$ medssl {shlex.join(argv)}", flush=True)
    return main(["-q", *argv] if is_quiet() else argv)  # `medssl -q demo` stays quiet in every step


def _run_domain(d: DemoDomain, out: Path) -> Path | None:
    """Run one domain's steps; returns its scores file, or None after a failed step."""
    data, pre, ft = out / d.name / "data", out / d.name / "pretrain", out / d.name / "finetune"
    for run_dir in (pre, ft):  # a second `medssl demo` starts its runs afresh (pretrain/finetune refuse old runs)
        if run_dir.is_dir():
            shutil.rmtree(run_dir)
    steps = [["ingest", d.ingest[0], *d.ingest[1:], "--out", str(data)],
             ["pretrain", "--data", str(data), "--out", str(pre), *d.pretrain]]
    model = pre / "checkpoint.pt"
    if d.finetune is not None:
        steps.append(["finetune", "--checkpoint", str(model), "--data", str(data), "--out", str(ft), *d.finetune])
        model = ft / "model.pt"
    scores = out / d.name / "scores.parquet"
    steps.append(["score", "--model", str(model), "--data", str(data), "--out", str(scores),
                  "--embeddings", str(out / d.name / "embeddings.parquet"), *d.score])
    for argv in steps:
        code = _medssl(argv)
        if code != 0:
            log.error("demo: `medssl %s` failed (exit %d); skipping the rest of the %s domain", argv[0], code, d.name)
            return None
    return scores


def app_defaults(domain_dir: Path) -> list[str]:
    """The ``medssl app`` flags for one demo domain's folder: its embeddings (similar cases, the
    map, re-ranking, Label next), and its pretrained checkpoint and DATA_DIR as the Fine-tune page's
    defaults (fine-tune, Register -> rescore)."""
    flags: list[str] = []
    for flag, path in (("--embeddings", domain_dir / "embeddings.parquet"),
                       ("--checkpoint", domain_dir / "pretrain" / "checkpoint.pt"),
                       ("--data", domain_dir / "data")):
        if path.exists():
            flags += [flag, str(path)]
    return flags


def run(args: argparse.Namespace) -> int:
    """Run the demo pipeline, create the demo reviewer, and serve the app (unless --no-serve)."""
    from medssl.review import add_user, import_scores, list_users, make_engine

    if not SAMPLE_DIR.is_dir():
        raise DataError(f"the bundled sample folder {SAMPLE_DIR} is missing; run the demo from a source checkout")
    wanted = [s.strip() for s in args.domains.split(",") if s.strip()]
    domains = [d for d in demo_domains(SAMPLE_DIR, args.epochs) if d.name in wanted]
    unknown = sorted(set(wanted) - {d.name for d in domains})
    if unknown:
        raise DataError(f"unknown demo domain(s) {unknown}; choose from imaging, transactions, ehr, signals")
    if not args.no_serve:  # say it now, not after the whole pipeline has run
        check_port_free("127.0.0.1", args.port)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, Path] = {}
    for d in domains:
        scores = _run_domain(d, out)
        if scores is not None:
            done[d.name] = scores
    failed = [d.name for d in domains if d.name not in done]
    if not done:
        log.error("demo: no domain completed; see the errors above")
        return 1

    db_url = f"sqlite:///{out / 'review.db'}"
    engine = make_engine(db_url)
    for name, scores in done.items():
        n = import_scores(engine, scores, scores.parent / "data")
        log.info("demo: %d %s cases in the review queue", n, name)
    password = secrets.token_urlsafe(9)
    reviewer = "demo_reviewer"
    if reviewer not in {u.name for u in list_users(engine)}:
        add_user(engine, reviewer, "admin", password)
    else:  # a second demo run keeps the first account: say so instead of printing a wrong password
        password = "(unchanged from the first demo run; delete demo_out/review.db to get a new one)"
    print("\n" + "=" * 70)
    print(f"Demo finished: {', '.join(done)}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    print(f"Review store: {db_url}")
    print(f"Sign in as:   {reviewer}\nPassword:     {password}")
    print("=" * 70, flush=True)
    if args.no_serve:
        return 1 if failed else 0
    app_args = ["app", "--db", db_url, "--port", str(args.port), *app_defaults(next(iter(done.values())).parent)]
    return _medssl(app_args)
