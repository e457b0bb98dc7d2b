"""What a new user meets when copy-pasting the README: quiet runs, progress in logs and on a
terminal, plot names, the review store's location, a busy port, a stopped pretraining run, and
README commands that actually parse. Runs on the bundled sample (datasets/), as the demo does.
"""

from __future__ import annotations

import io
import logging
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from medssl.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
SAMPLE_NPZ = REPO / "datasets" / "imaging" / "pneumoniamnist_sample.npz"
TINY = ["--batch-size", "16", "--limit-cases", "64", "--accelerator", "cpu"]  # 4 steps per epoch
BAR_CHARS = ("\r", "\x1b", "━", "█", "▏", "it/s]")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MEDSSL_DB", "MEDSSL_PROGRESS_EVERY_S")}
    env["OMP_NUM_THREADS"] = "1"  # a shared CPU: one thread is as fast and leaves room for the others
    env.update(extra)
    return env


def _medssl(*args: str, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("env", _env())
    return subprocess.run([sys.executable, "-m", "medssl", *args], cwd=kw.pop("cwd", REPO), capture_output=True,
                          text=True, timeout=kw.pop("timeout", 300), **kw)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("polish") / "data"
    assert main(["-q", "ingest", "images", str(SAMPLE_NPZ), "--format", "npz", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def checkpoint(data_dir: Path) -> Path:
    run = data_dir.parent / "pretrain"
    assert main(["-q", "pretrain", "--data", str(data_dir), "--out", str(run), "--max-steps", "2", *TINY]) == 0
    return run / "checkpoint.pt"


@pytest.fixture(scope="module")
def model(checkpoint: Path, data_dir: Path) -> Path:
    run = data_dir.parent / "finetune"
    assert main(["-q", "finetune", "--checkpoint", str(checkpoint), "--data", str(data_dir), "--out", str(run),
                 "--label-fraction", "0.1", "--mode", "linear"]) == 0
    return run / "model.pt"


# ---------------------------------------------------------------- -q, progress in logs and on a terminal

def test_quiet_pretrain_prints_no_info_lines_and_no_progress_bar(data_dir: Path, tmp_path: Path) -> None:
    done = _medssl("-q", "pretrain", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--max-steps", "2", *TINY)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(tmp_path / "run" / "checkpoint.pt")
    assert " INFO " not in done.stderr and "GPU available" not in done.stderr, done.stderr
    assert not any(c in done.stderr + done.stdout for c in BAR_CHARS), repr(done.stderr)
    assert "Epoch" not in done.stderr


def test_pretrain_without_a_terminal_logs_plain_lines_with_epoch_of_total(data_dir: Path, tmp_path: Path) -> None:
    done = _medssl("pretrain", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--epochs", "2", *TINY,
                   env=_env(MEDSSL_PROGRESS_EVERY_S="0"))  # a line per step instead of one per 10 s
    assert done.returncode == 0, done.stderr[-2000:]
    assert not any(c in done.stderr for c in BAR_CHARS), repr(done.stderr[-2000:])
    lines = [ln for ln in done.stderr.splitlines() if " Epoch " in ln]
    assert any(re.search(r"INFO Epoch 1/2: \d/8 step \(\d+%\), [\d.e+]+ step/s, ETA \d+:\d\d, loss [\d.]+", ln)
               for ln in lines), lines
    assert any("Epoch 2/2: 8/8 step" in ln for ln in lines), lines
    assert not any("Epoch 0" in ln or "Epoch 3" in ln for ln in lines), lines


def test_pretrain_bar_on_a_terminal_counts_epochs_from_1_of_n(data_dir: Path, tmp_path: Path) -> None:
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 40 rows, 120 columns
    proc = subprocess.Popen([sys.executable, "-m", "medssl", "pretrain", "--data", str(data_dir), "--out",
                             str(tmp_path / "run"), "--epochs", "2", *TINY],
                            cwd=REPO, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave)
    os.close(slave)
    seen = b""
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            if select.select([master], [], [], 1.0)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=60) == 0, seen.decode(errors="replace")[-2000:]
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    text = seen.decode(errors="replace")
    assert "Epoch 1/2" in text and "Epoch 2/2" in text, text[-2000:]
    assert "8/8" in text and "Epoch 0" not in text


def test_epoch_label_counts_from_1_and_knows_max_steps() -> None:
    from medssl.train.progress_bar import epoch_label

    def trainer(epoch: int, max_epochs: int | None, max_steps: int, per_epoch: int) -> SimpleNamespace:
        return SimpleNamespace(current_epoch=epoch, max_epochs=max_epochs, max_steps=max_steps,
                               num_training_batches=per_epoch, accumulate_grad_batches=1)

    assert epoch_label(trainer(0, 10, -1, 25)) == "Epoch 1/10"
    assert epoch_label(trainer(9, 10, -1, 25)) == "Epoch 10/10"
    assert epoch_label(trainer(0, 10, 2, 25)) == "Epoch 1/1"  # --max-steps 2 ends in the first epoch
    assert epoch_label(trainer(1, 10, 30, 25)) == "Epoch 2/2"
    assert epoch_label(trainer(4, -1, -1, 25)) == "Epoch 5"  # no end known: no total to show


NESTED = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
from medssl.progress import progress
for run in progress(range(3), desc="runs", unit="run"):
    for batch in progress(range(4), desc="embedding", unit="batch"):
        pass
"""


def test_nested_progress_without_a_terminal_writes_plain_lines_no_escape_codes() -> None:
    done = subprocess.run([sys.executable, "-c", NESTED], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=_env(MEDSSL_PROGRESS_EVERY_S="0"))
    assert done.returncode == 0, done.stderr
    assert not any(c in done.stderr for c in BAR_CHARS), repr(done.stderr)
    lines = done.stderr.splitlines()
    # per run: the inner step's 4 lines and its closing line, then the outer step's line
    assert re.fullmatch(r"INFO embedding: 4/4 batch \(100%\), [\d.e+]+ batch/s, ETA 00:00", lines[3]), lines
    assert re.fullmatch(r"INFO embedding: 4 batch done in \d+:\d\d \([\d.e+]+ batch/s\)", lines[4]), lines
    assert re.fullmatch(r"INFO runs: 1/3 run \(33%\), [\d.e+]+ run/s, ETA \d+:\d\d", lines[5]), lines
    assert re.fullmatch(r"INFO runs: 3 run done in \d+:\d\d \([\d.e+]+ run/s\)", lines[-1]), lines
    assert len(lines) == 3 * 6 + 1


def test_short_steps_without_a_terminal_print_nothing_and_quiet_prints_nothing(capsys, caplog) -> None:
    from medssl.progress import Progress, progress, set_quiet

    caplog.set_level(logging.INFO)
    assert list(progress(range(5), desc="quick")) == [0, 1, 2, 3, 4]
    assert caplog.records == [] and capsys.readouterr().err == ""  # under 10 s: no line at all
    set_quiet(True)
    try:
        bar = Progress(10, desc="hidden", interactive=True)
        bar.update(10)
        bar.close()
    finally:
        set_quiet(False)
    assert capsys.readouterr().err == ""


def test_label_efficiency_log_has_no_escape_codes(checkpoint: Path, data_dir: Path, tmp_path: Path) -> None:
    done = _medssl("label-efficiency", "--checkpoint", str(checkpoint), "--data", str(data_dir), "--out",
                   str(tmp_path / "curve"), "--fractions", "0.1,0.5", "--seeds", "0", "--modes", "linear",
                   "--no-supervised", env=_env(MEDSSL_PROGRESS_EVERY_S="0"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "\x1b" not in done.stderr and "\r" not in done.stderr, repr(done.stderr[-2000:])
    assert re.search(r"INFO .*: \d+/\d+ \w+ \(\d+%\), [\d.e+]+ \w+/s, ETA \d+:\d\d", done.stderr), done.stderr[-2000:]


# ---------------------------------------------------------------- evaluate: plots named after the report

def test_write_plots_names_the_files_after_the_report(tmp_path: Path) -> None:
    import numpy as np

    from medssl.eval.report import write_plots

    y, p = np.array([0, 1, 0, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert write_plots(y, p, ["neg", "pos"], tmp_path, stem="cxr") == {
        "roc": "cxr.roc.png", "pr": "cxr.pr.png", "confusion": "cxr.confusion.png"}
    assert sorted(f.name for f in tmp_path.iterdir()) == ["cxr.confusion.png", "cxr.pr.png", "cxr.roc.png"]


def test_two_reports_in_one_folder_keep_their_own_plots(model: Path, data_dir: Path, tmp_path: Path) -> None:
    import json

    reports = tmp_path / "reports"
    for name, split in (("on_val", "val"), ("on_train", "train")):
        assert main(["-q", "evaluate", "--model", str(model), "--data", str(data_dir), "--out",
                     str(reports / f"{name}.json"), "--split", split, "--bootstrap", "20"]) == 0
    assert sorted(f.name for f in reports.iterdir()) == sorted(
        f"{name}.{kind}" for name in ("on_val", "on_train") for kind in ("json", "roc.png", "pr.png", "confusion.png"))
    for name in ("on_val", "on_train"):
        plots = json.loads((reports / f"{name}.json").read_text())["plots"]
        assert plots == {"roc": f"{name}.roc.png", "pr": f"{name}.pr.png", "confusion": f"{name}.confusion.png"}
    for kind in ("roc", "pr", "confusion"):  # different cases, different pictures: neither overwrote the other
        assert (reports / f"on_val.{kind}.png").read_bytes() != (reports / f"on_train.{kind}.png").read_bytes()


# ---------------------------------------------------------------- the review store and the app

def test_users_without_db_say_which_store_they_use(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEDSSL_DB", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("lee-password\n"))
    assert main(["users", "add", "dr_lee", "--role", "clinician", "--password-stdin"]) == 0
    store = tmp_path / "medssl_review.db"
    err = capsys.readouterr().err
    assert store.is_file()
    assert f"WARNING no --db given: creating the review store {store}" in err and "MEDSSL_DB" in err, err
    assert main(["users", "list"]) == 0  # the same store, found again: said, not warned
    captured = capsys.readouterr()
    assert "dr_lee" in captured.out and "WARNING" not in captured.err
    assert f"INFO review store: {store} (the default" in captured.err
    other = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MEDSSL_DB", other)
    assert main(["users", "list"]) == 0
    assert f"review store: {other} (from $MEDSSL_DB)" in capsys.readouterr().err
    help_text = subprocess.run([sys.executable, "-m", "medssl", "app", "--help"], capture_output=True, text=True,
                               cwd=REPO, timeout=120).stdout
    assert "medssl_review.db in the current folder" in " ".join(help_text.split())


def test_app_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "review.db"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _medssl("app", "--db", f"sqlite:///{db}", "--port", str(port), timeout=120)
        demo = _medssl("demo", "--port", str(port), "--out", str(tmp_path / "demo"), timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"medssl: error: port {port} is in use; pass --port N"]
    assert "serving" not in done.stdout + done.stderr
    assert not db.exists()  # refused before the store was touched
    # the demo says so before its pipeline runs, not minutes later
    assert demo.returncode == 2 and demo.stderr.strip().splitlines() == done.stderr.strip().splitlines()
    assert not (tmp_path / "demo").exists()


# ---------------------------------------------------------------- SIGTERM during pretraining

@pytest.mark.slow
def test_sigterm_stops_pretraining_with_the_resume_command(data_dir: Path, tmp_path: Path) -> None:
    from medssl.checkpoints import load_checkpoint

    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "medssl", "-q", "pretrain", "--data", str(data_dir), "--out",
                             str(run), "--epochs", "100", *TINY], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not (run / "last.ckpt").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert out == ""  # no checkpoint path: the run did not finish
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(r"medssl: pretraining stopped at epoch (\d+)/100 step (\d+); resume with: (medssl pretrain .*"
                     r"--resume) \(continues from step (\d+), the last epoch end\)", last)
    assert m, err[-2000:]
    epoch, step, command, saved = int(m[1]), int(m[2]), m[3], int(m[4])
    assert saved % 4 == 0 and 4 <= saved <= step and 4 * (epoch - 1) <= step <= 4 * epoch
    assert shlex.split(command) == ["medssl", "pretrain", "--data", str(data_dir), "--out", str(run), "--resume"]
    resumed = _medssl(*shlex.split(command)[1:], "--max-steps", str(saved + 4))  # one more epoch, not 100
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(run / "checkpoint.pt").meta["global_step"] == saved + 4
    steps = [int(line.split(",")[1]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, saved + 5))  # continued where it was saved: no gap, no repeat


# ---------------------------------------------------------------- the README, as a new user reads it

def _readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _commands(section: str) -> list[list[str]]:
    """The ``medssl ...`` command lines of a section's first code block, continuation lines joined."""
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line.split("  #")[0]) for line in joined.splitlines() if line.startswith("medssl ")]


def test_readme_loop_commands_parse_and_serve_the_embeddings_they_write(capsys) -> None:
    loop = _readme_section("The loop, step by step")
    commands = _commands(loop)
    assert len(commands) >= 12
    parser = build_parser()
    for argv in commands:
        try:
            parser.parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"README command does not parse: {shlex.join(argv)}\n{capsys.readouterr().err}")
    score = next(a for a in commands if a[1] == "score")
    app = next(a for a in commands if a[1] == "app")
    written = score[score.index("--embeddings") + 1]
    assert app[app.index("--embeddings") + 1] == written
    assert app[app.index("--scores") + 1] == score[score.index("--out") + 1]


def test_readme_says_how_to_get_medssl_on_the_path_and_what_site_key_is() -> None:
    quickstart = _readme_section("Quickstart")
    assert "source .venv/bin/activate" in quickstart and ".venv/bin/medssl" in quickstart
    loop = _readme_section("The loop, step by step")
    before_use = loop.split('--pseudonymize-key "$SITE_KEY"')[0]
    assert "export SITE_KEY=" in before_use and "secrets.token_hex(32)" in before_use


def test_readme_and_demo_help_give_the_same_measured_demo_time() -> None:
    readme = " ".join((REPO / "README.md").read_text().split())
    help_text = " ".join(_medssl("demo", "--help", timeout=120).stdout.split())
    found = re.search(r"`make demo` took ([^()]+?) \(measured (\d{4}-\d\d-\d\d)", readme)
    assert found, "README: no measured `make demo` time"
    assert f"took {found[1]} (measured {found[2]}" in help_text, help_text


def test_a_closed_pipe_ends_the_listing_without_an_error_line() -> None:
    """`medssl methods | head -1`: the reader leaves after one line; medssl stops quietly (no traceback,
    no `medssl: error: [Errno 32] Broken pipe`) with the shell's SIGPIPE code."""
    proc = subprocess.Popen([sys.executable, "-m", "medssl.cli", "methods"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # no reader left before medssl writes (what `head` does after its lines): every write fails
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "error" not in err.lower() and "Traceback" not in err
