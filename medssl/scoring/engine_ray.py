"""The Ray engine: Ray Data ``map_batches`` over manifest chunks with an actor pool holding the model.

Each actor loads the model file once (digest-checked, like the local engine) and scores whole
chunks with the same ``score_chunk`` code as the local engine, so both engines give the same
numbers. The driver collects each chunk's rows as they stream back and writes the part files
itself, so only the driver needs write access to ``OUT``. On a cluster (``--ray-address``) every
node must see the model file and DATA_DIR at the same absolute paths (a shared file system).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medssl import errors as medssl_errors
from medssl.errors import MedsslError
from medssl.scoring.chunk import ChunkResult, score_chunk
from medssl.scoring.engine_local import Chunk
from medssl.models import load_model

log = logging.getLogger(__name__)

ScorerSpec = tuple[str, dict[str, Any], dict[str, torch.Tensor]]  # name, kwargs, state_dict


class ChunkScorer:
    """Ray Data actor: holds one loaded model; each call scores the chunks in its batch.

    Input batch: ``{"chunk", "start", "stop"}`` int arrays. Output: one row per manifest row of
    those chunks with ``chunk``, ``pos``, ``ok``, the score columns, ``embedding`` ``(n, D)`` and
    ``error_path``/``error_reason`` for cases that failed to decode.
    """

    def __init__(
        self, model_path: str, data_dir: str, manifest_box: list[Any], scorer: ScorerSpec | None,
        batch_size: int, device: str,
    ) -> None:
        import ray

        self.model = load_model(model_path, device)
        if scorer is not None:
            self.model.set_scorer(*scorer)
        self.data_dir = Path(data_dir)
        self.manifest: pd.DataFrame = ray.get(manifest_box[0])
        self.batch_size = batch_size

    def _rows(self, chunk: int, n: int, res: ChunkResult) -> dict[str, np.ndarray]:
        dim = res.embeddings.shape[1]
        cols: dict[str, np.ndarray] = {
            "chunk": np.full(n, chunk, dtype=np.int64),
            "pos": np.arange(n, dtype=np.int64),
            "ok": np.zeros(n, dtype=bool),
            "anomaly_score": np.full(n, np.nan),
            "anomaly_percentile": np.full(n, np.nan),
            "predicted_label": np.full(n, "", dtype=object),
            "predicted_proba": np.full(n, np.nan),
            "embedding": np.zeros((n, dim), dtype=np.float32),
            "error_path": np.full(n, "", dtype=object),
            "error_reason": np.full(n, "", dtype=object),
        }
        ok = res.ok
        cols["ok"][ok] = True
        cols["anomaly_score"][ok] = res.anomaly_score
        cols["anomaly_percentile"][ok] = res.anomaly_percentile
        cols["predicted_label"][ok] = [("" if v is None else str(v)) for v in res.predicted_label]
        cols["predicted_proba"][ok] = res.predicted_proba
        cols["embedding"][ok] = res.embeddings
        for pos, path, reason in res.errors:
            cols["error_path"][pos], cols["error_reason"][pos] = path, reason
        cols["predicted_label"] = cols["predicted_label"].astype(str)
        cols["error_path"] = cols["error_path"].astype(str)
        cols["error_reason"] = cols["error_reason"].astype(str)
        cols["fatal"] = np.full(n, "").astype(str)
        return cols

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = []
        for chunk, start, stop in zip(batch["chunk"], batch["start"], batch["stop"]):
            try:
                res = score_chunk(self.model, self.data_dir, self.manifest.iloc[int(start):int(stop)], self.batch_size)
            except MedsslError as exc:
                # A user error (bad manifest, bad preprocessing): hand it to the driver as data, since
                # Ray's exception wrappers do not carry the original across processes.
                return self._fatal(int(chunk), exc)
            outs.append(self._rows(int(chunk), int(stop - start), res))
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def _fatal(self, chunk: int, exc: MedsslError) -> dict[str, np.ndarray]:
        empty = ChunkResult(np.zeros(0, np.int64), np.zeros((0, int(self.model.encoder.num_features)), np.float32),
                            np.zeros(0), np.zeros(0), np.zeros(0, dtype=object), np.zeros(0), [(0, "", "")])
        cols = self._rows(chunk, 1, empty)
        cols["fatal"] = np.asarray([f"{type(exc).__name__}\t{exc}"])
        return cols


def _to_result(parts: list[dict[str, np.ndarray]], has_head: bool) -> ChunkResult:
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(cols["pos"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    ok = cols["ok"].astype(bool)
    labels = cols["predicted_label"][ok].astype(object)
    if not has_head:
        labels = np.full(int(ok.sum()), None, dtype=object)
    errors = [
        (int(p), str(path), str(reason))
        for p, path, reason in zip(cols["pos"][~ok], cols["error_path"][~ok], cols["error_reason"][~ok])
    ]
    return ChunkResult(
        ok=cols["pos"][ok].astype(np.int64),
        embeddings=np.asarray(cols["embedding"][ok], dtype=np.float32),
        anomaly_score=cols["anomaly_score"][ok].astype(np.float64),
        anomaly_percentile=cols["anomaly_percentile"][ok].astype(np.float64),
        predicted_label=labels,
        predicted_proba=cols["predicted_proba"][ok].astype(np.float64),
        errors=errors,
    )


def _medssl_error(exc: BaseException) -> MedsslError | None:
    """The ``MedsslError`` an actor raised, found in Ray's chain of wrapping exceptions."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, MedsslError) and type(e).__module__.startswith("medssl"):
            return e  # the original, not Ray's RayTaskError(DataError) wrapper class
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return None


def _raise_fatal(fatal: np.ndarray) -> None:
    """Re-raise, as its own ``medssl.errors`` class, a user error an actor returned as data."""
    hits = [str(f) for f in fatal if str(f)]
    if not hits:
        return
    name, message = hits[0].split("\t", 1)
    cls = getattr(medssl_errors, name, MedsslError)
    try:
        error = cls(message) if isinstance(cls, type) and issubclass(cls, MedsslError) else MedsslError(message)
    except TypeError:  # a class with another signature (ReaderError)
        error = MedsslError(message)
    raise error


CONNECT_TIMEOUT_S = 10.0


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ``MedsslError`` (one line) when ``HOST:PORT`` (or ``ray://HOST:PORT``) does not accept
    a TCP connection within ``timeout_s``: Ray itself would retry for ever. ``auto`` is not probed."""
    import socket

    target = address.removeprefix("ray://")
    if address == "auto" or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        port_number = int(port)
    except ValueError:
        raise MedsslError(f"--ray-address {address!r}: the port {port!r} is not a number; use HOST:PORT or auto") from None
    try:
        socket.create_connection((host.strip("[]"), port_number), timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise MedsslError(
            f"cannot reach the Ray cluster at {address} within {timeout_s:.0f} s ({reason}); check --ray-address "
            "(the head node's HOST:PORT, port 6379 by default) or leave it out to start a local cluster"
        ) from None


def run_ray(
    model_path: Path,
    data_dir: Path,
    manifest: pd.DataFrame,
    chunks: list[Chunk],
    batch_size: int,
    scorer: ScorerSpec | None,
    has_head: bool,
    address: str | None = None,
    workers: int | None = None,
    device: str = "cpu",
) -> Iterator[tuple[int, ChunkResult]]:
    """Yield ``(chunk index, result)`` as chunks complete on a Ray actor pool (any order).

    Joins the cluster at ``address`` (``"auto"`` or ``"HOST:PORT"``), else starts a local one (and
    shuts it down at the end); if Ray is already initialised in this process it is used as is.
    ``workers`` actors (default: one per CPU of the cluster, at most one per chunk).
    """
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is an optional extra
        raise MedsslError("--engine ray needs Ray: pip install 'medssl[ray]'") from None
    if not chunks:
        return
    started = False
    if not ray.is_initialized():
        try:
            if address:
                check_reachable(address)
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(address="local", include_dashboard=False, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise MedsslError(f"could not join the Ray cluster at {address or 'a new local cluster'}: {exc}") from None
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        n_cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        pool = max(1, min(workers or n_cpus, len(chunks)))
        log.info("Ray engine: %d actor(s) on a cluster with %d CPU(s)", pool, n_cpus)
        manifest_box = [ray.put(manifest.reset_index(drop=True))]
        items = [{"chunk": c, "start": s, "stop": e} for c, s, e in chunks]
        expected = {c: e - s for c, s, e in chunks}
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            ChunkScorer,
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=pool),
            num_cpus=1,
            fn_constructor_args=(str(model_path), str(data_dir), manifest_box, scorer, batch_size, device),
        )
        pending: dict[int, list[dict[str, np.ndarray]]] = {}
        seen: dict[int, int] = {}
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                _raise_fatal(batch["fatal"])
                for c in np.unique(batch["chunk"]):
                    sel = batch["chunk"] == c
                    c = int(c)
                    pending.setdefault(c, []).append({k: v[sel] for k, v in batch.items()})
                    seen[c] = seen.get(c, 0) + int(sel.sum())
                    if seen[c] == expected[c]:
                        yield c, _to_result(pending.pop(c), has_head)
        except Exception as exc:  # Ray wraps an actor's error (RayTaskError, UserCodeException)
            user_error = _medssl_error(exc)
            if user_error is not None:
                raise user_error from None
            raise
    finally:
        if started:
            ray.shutdown()
