"""`medssl score --engine ray` on a real local Ray cluster (127.0.0.1) against the local engine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from score_models import build_model_file, npz_data_dir, png_data_dir, without_time

from medssl.cli import main
from medssl.data import write_manifest

ray = pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """A real single-node Ray cluster for this module; shut down afterwards."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _score(model: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["score", "--model", str(model), "--data", str(data), "--out", str(out), *extra])


def _assert_same_scores(a: Path, b: Path) -> None:
    pd.testing.assert_frame_equal(without_time(pd.read_parquet(a)), without_time(pd.read_parquet(b)), rtol=1e-5)


def test_ray_engine_gives_the_local_scores_and_errors(ray_cluster, tmp_path, shared_data) -> None:
    data, manifest = png_data_dir(shared_data, tmp_path, 24)
    model = build_model_file(tmp_path / "model.pt", data, manifest)
    val = manifest[manifest["split"] == "val"]
    Path(val["path"].iloc[2]).write_bytes(b"corrupted after ingest")
    Path(val["path"].iloc[9]).unlink()
    args = ["--chunk-size", "5", "--flag-top", "4"]
    assert _score(model, data, tmp_path / "local.parquet", *args) == 0
    assert _score(model, data, tmp_path / "ray.parquet", *args, "--engine", "ray", "--ray-workers", "2") == 0
    _assert_same_scores(tmp_path / "local.parquet", tmp_path / "ray.parquet")
    assert len(pd.read_parquet(tmp_path / "ray.parquet")) == 22
    local_err = pd.read_csv(tmp_path / "local.errors.csv")
    ray_err = pd.read_csv(tmp_path / "ray.errors.csv")
    pd.testing.assert_frame_equal(local_err, ray_err)
    assert sorted(ray_err["case_id"]) == sorted(val["case_id"].iloc[[2, 9]])


def test_a_user_error_inside_an_actor_is_one_clear_line(ray_cluster, tmp_path, shared_data, capsys) -> None:
    manifest = npz_data_dir(shared_data, tmp_path / "data", 20, 10)
    model = build_model_file(tmp_path / "model.pt", tmp_path / "data", manifest)
    write_manifest(manifest.assign(source_format="tiff"), tmp_path / "data")  # only the actors read images
    rc = _score(model, tmp_path / "data", tmp_path / "ray.parquet", "--engine", "ray", "--ray-workers", "1")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("medssl: error:") and "unknown source_format" in err[-1]
    assert "Traceback" not in "\n".join(err) and not (tmp_path / "ray.parquet").exists()


def test_ray_engine_ships_a_reference_scorer_fitted_by_the_driver(ray_cluster, tmp_path, shared_data) -> None:
    manifest = npz_data_dir(shared_data, tmp_path / "data", 60, 40)
    encoder = build_model_file(tmp_path / "encoder.pt", tmp_path / "data", manifest, kind="encoder")
    args = ["--chunk-size", "30", "--flag-percentile", "80"]
    assert _score(encoder, tmp_path / "data", tmp_path / "local.parquet", *args) == 0
    assert _score(encoder, tmp_path / "data", tmp_path / "ray.parquet", *args, "--engine", "ray") == 0
    _assert_same_scores(tmp_path / "local.parquet", tmp_path / "ray.parquet")
    assert pd.read_parquet(tmp_path / "ray.parquet")["predicted_label"].isna().all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ray_address_joins_a_running_cluster(tmp_path, shared_data) -> None:
    manifest = npz_data_dir(shared_data, tmp_path / "data", 40, 20)
    model = build_model_file(tmp_path / "model.pt", tmp_path / "data", manifest)
    port = _free_port()
    ray_bin = Path(sys.executable).with_name("ray")
    # a private test cluster on 127.0.0.1: no token, so a token another Ray user rewrote in ~/.ray cannot interfere
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # wait for the head's GCS to accept connections
            assert head.poll() is None, "ray start --head exited early"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "Ray head did not come up within 120 s"
                time.sleep(0.5)
        time.sleep(2)
        cmd = [sys.executable, "-m", "medssl", "score", "--model", str(tmp_path / "model.pt"), "--data",
               str(tmp_path / "data"), "--out", str(tmp_path / "ray.parquet"), "--chunk-size", "20",
               "--engine", "ray", "--ray-address", f"127.0.0.1:{port}"]
        run = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0, run.stderr[-2000:]
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=60)
    assert _score(model, tmp_path / "data", tmp_path / "local.parquet", "--chunk-size", "20") == 0
    _assert_same_scores(tmp_path / "local.parquet", tmp_path / "ray.parquet")
