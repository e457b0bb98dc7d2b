""""Why flagged": occlusion explanations of flagged cases, written by ``medssl score``.

For a flagged case ``x`` (``(*input_shape)``) and each explanation unit ``u`` of its domain
(``medssl.domains.explain_units``: a transaction column, an ICU variable, a time window of a beat,
an image region), the case is re-scored with ``u`` set to the *typical item*'s values there (the
position-wise median of up to ``TYPICAL_SAMPLE`` reference items). The drop in anomaly score says
how much ``u`` makes the case unusual *to this model's own scorer*. The explanation names the
units with the largest drops, the anomaly percentile each leaves, and the nearest unflagged case
(cosine distance of the embeddings), e.g.::

    Most unusual: V14 (percentile 99.9, falls to 41.7 when set to typical); V4 (falls to 97.0).
    All 2 set to typical: percentile 30.2. Nearest unflagged case: 1234.

Runs after every chunk is scored and before the commit (the flags must be known): each chunk's
explanations are a file ``explain-<chunk>.parquet`` in the parts folder, written atomically, so a
killed run resumes without explaining a chunk twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from medssl.atomic import atomic_write
from medssl.domains.explain_units import ExplainUnit, explain_units, occlusion_fill
from medssl.models import Model
from medssl.progress import progress
from medssl.scoring.chunk import decode_batches
from medssl.scoring.parts import EXPLAIN_SCHEMA, explain_path

log = logging.getLogger(__name__)

TYPICAL_SAMPLE = 256
"""Reference items whose position-wise median is the typical item."""
TOP_UNITS = 3
"""Units named per explanation."""
NEIGHBOUR_SAMPLE = 100_000
"""Unflagged cases searched for the nearest one (a seeded sample above this)."""
OCCLUDED_PER_CALL = 1024
"""Occluded items embedded and scored per model call."""

def _decode(model: Model, data_dir: Path, rows: pd.DataFrame) -> tuple[torch.Tensor, np.ndarray]:
    """``(items (n_ok, *input_shape), positions of rows that decoded)``, through the scoring job's
    own batched decoder (a case that fails to decode is left out, as when it was scored)."""
    items, ok = [], []
    for batch in decode_batches(model, data_dir, rows, OCCLUDED_PER_CALL):
        if batch["x"] is not None:
            items.append(batch["x"])
            ok.append(batch["index"].numpy())
    if not items:
        return torch.zeros(0), np.zeros(0, np.int64)
    return torch.cat(items).float(), np.concatenate(ok)


def typical_item(model: Model, data_dir: Path, manifest: pd.DataFrame, split: str, seed: int = 0) -> torch.Tensor | None:
    """The position-wise median ``(*input_shape)`` of up to ``TYPICAL_SAMPLE`` rows of ``split``
    (all rows when there is no such split); a value some item really has at each position
    (lower median: a category code stays a category). ``None`` when nothing decodes."""
    rows = manifest
    if "split" in manifest.columns and (manifest["split"].astype(str) == split).any():
        rows = manifest.loc[manifest["split"].astype(str) == split]
    if len(rows) > TYPICAL_SAMPLE:
        rows = rows.sample(TYPICAL_SAMPLE, random_state=seed).sort_index()
    items, _ = _decode(model, data_dir, rows)
    if not len(items):
        return None
    return torch.from_numpy(np.quantile(items.numpy(), 0.5, axis=0, method="lower")).float()


def _score(model: Model, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, percentiles)`` of items ``(N, *input_shape)``, ``OCCLUDED_PER_CALL`` at a time."""
    out = [model.anomaly(model.anomaly_features(b, model.embed_batch(b))) for b in torch.split(x, OCCLUDED_PER_CALL)]
    return np.concatenate([s for s, _ in out]), np.concatenate([p for _, p in out])


@dataclass(frozen=True)
class Occlusion:
    """Scores of cases ``(B,)``, of each case with unit ``u`` set to typical ``(B, U)``, the
    ``TOP_UNITS`` units whose removal lowers each case's score most ``(B, <=TOP_UNITS)`` (-1: none
    lowers it), and the percentile with those units set to typical together ``(B,)``."""

    score: np.ndarray
    percentile: np.ndarray
    score_without: np.ndarray
    percentile_without: np.ndarray
    top: np.ndarray
    percentile_without_top: np.ndarray


def occlude(model: Model, x: torch.Tensor, typical: torch.Tensor, units: list[ExplainUnit]) -> Occlusion:
    """Re-score each case of ``x`` ``(B, *input_shape)`` once per unit, that unit set to its fill
    (``occlusion_fill``: the ``typical`` item, or an image's own median grey)."""
    masks = torch.from_numpy(np.stack([u.mask for u in units]))  # (U, *input_shape)
    fill = torch.from_numpy(np.array(occlusion_fill(model.domain, x.numpy(), typical.numpy()), dtype=np.float32))
    score, pct = _score(model, x)
    per_call = max(1, OCCLUDED_PER_CALL // len(units))
    s_without, p_without = [], []
    for start in range(0, len(x), per_call):
        cases = x[start:start + per_call]
        occluded = torch.where(masks[None], fill[start:start + per_call, None], cases[:, None])  # (b, U, *input_shape)
        s, p = _score(model, occluded.reshape(-1, *x.shape[1:]))
        s_without.append(s.reshape(len(cases), len(units)))
        p_without.append(p.reshape(len(cases), len(units)))
    s_without, p_without = np.concatenate(s_without), np.concatenate(p_without)
    drop = score[:, None] - s_without
    top = np.argsort(-drop, axis=1, kind="stable")[:, :TOP_UNITS]
    top = np.where(np.take_along_axis(drop, top, axis=1) > 0, top, -1)
    together = np.stack([masks[[u for u in row if u >= 0]].any(dim=0) if (row >= 0).any()
                         else torch.zeros(masks.shape[1:], dtype=torch.bool) for row in top])
    _, p_top = _score(model, torch.where(torch.from_numpy(together), fill, x))
    return Occlusion(score, pct, s_without, p_without, top, p_top)


def explanation_text(units: list[ExplainUnit], occ: Occlusion, i: int, nearest: str | None) -> str:
    """The explanation of case ``i`` of ``occ`` (see the module docstring)."""
    order = [int(u) for u in occ.top[i] if u >= 0]
    before = occ.percentile[i]
    if order:
        parts = [f"{units[order[0]].name} (percentile {before:.1f}, falls to {occ.percentile_without[i, order[0]]:.1f} "
                 "when set to typical)"]
        parts += [f"{units[u].name} (falls to {occ.percentile_without[i, u]:.1f})" for u in order[1:]]
        text = "Most unusual: " + "; ".join(parts) + "."
        if len(order) > 1:
            text += f" All {len(order)} set to typical: percentile {occ.percentile_without_top[i]:.1f}."
    else:
        text = (f"No single part explains it: setting any one {units[0].kind} to typical leaves the percentile at "
                f"{occ.percentile_without[i].min():.1f} or above (the combination is unusual).")
    return text + (f" Nearest unflagged case: {nearest}." if nearest is not None else "")


class _Nearest:
    """The nearest unflagged case (cosine on embeddings) among a seeded sample of at most about
    ``NEIGHBOUR_SAMPLE`` of them, read part by part (memory stays bounded on large jobs)."""

    def __init__(self, parts_files: list[Path], flags: list[np.ndarray], seed: int = 0) -> None:
        from medssl.anomaly.neighbours import NeighbourIndex

        rate = min(1.0, NEIGHBOUR_SAMPLE / max(1, int(sum(int((~f).sum()) for f in flags))))
        rng = np.random.default_rng(seed)
        ids, embs = [], []
        for path, flagged in zip(parts_files, flags):
            _, case_ids, emb = _part_embeddings(path)
            keep = ~flagged & (rng.random(len(flagged)) < rate)
            ids.append(case_ids[keep])
            embs.append(_unit(emb[keep]))
        self.ids = np.concatenate(ids) if ids else np.zeros(0, str)
        self.index = NeighbourIndex(np.concatenate(embs)) if len(self.ids) else None

    def __call__(self, emb: np.ndarray) -> list[str | None]:
        if self.index is None:
            return [None] * len(emb)
        _, idx = self.index.search(_unit(emb), 1)
        return [str(self.ids[j]) for j in idx[:, 0]]


def _unit(emb: np.ndarray) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float64)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def _part_embeddings(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(row (n,), case_id (n,), embedding (n, D))`` of a part file."""
    t = pq.read_table(path, columns=["row", "case_id", "embedding"])
    emb = t.column("embedding").combine_chunks()
    dim = emb.type.list_size
    matrix = emb.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim) if len(emb) else np.zeros((0, dim))
    return (t.column("row").to_numpy(), t.column("case_id").to_numpy(zero_copy_only=False).astype(str), matrix)


def _explained(part: Path, chunk: int, flagged: np.ndarray) -> bool:
    """Whether the chunk's explain file exists for exactly its flagged rows (a resumed run may flag others)."""
    path = explain_path(part.parent, chunk)
    if not path.is_file():
        return False
    rows = pq.read_table(part, columns=["row"]).column(0).to_numpy()
    return set(pq.read_table(path, columns=["row"]).column(0).to_pylist()) == set(rows[flagged].tolist())


def explain_flagged(model: Model, data_dir: Path, manifest: pd.DataFrame, parts_files: list[Path],
                    flags: list[np.ndarray], reference_split: str) -> int:
    """Write ``explain-<chunk>.parquet`` beside each part that has flagged cases and no such file yet.

    ``parts_files[c]`` is chunk ``c``'s part, ``flags[c]`` its ``flagged`` column; ``manifest`` the
    scored rows (a part's ``row`` indexes it). Returns how many cases were explained now.
    """
    todo = [c for c, f in enumerate(flags) if f.any() and not _explained(parts_files[c], c, f)]
    if not todo:
        return 0
    typical = typical_item(model, data_dir, manifest, reference_split)
    fs = manifest["fs"].dropna().unique() if "fs" in manifest.columns else []
    units = [] if typical is None else explain_units(model.domain, model.preprocessing or {}, tuple(typical.shape),
                                                     float(fs[0]) if len(fs) == 1 else None)
    if typical is None or not units:
        log.info("no explanations: the %r model's items have no parts medssl knows how to occlude", model.domain)
        return 0
    nearest = _Nearest(parts_files, flags)
    n_done = 0
    total = int(sum(int(flags[c].sum()) for c in todo))
    log.info("explaining %d flagged cases: %d %ss each set to typical and re-scored", total, len(units), units[0].kind)
    for c in progress(todo, total=len(todo), desc="explaining flagged cases", unit="chunk"):
        rows, _, emb = _part_embeddings(parts_files[c])
        pick = np.flatnonzero(flags[c])
        x, ok = _decode(model, data_dir, manifest.iloc[rows[pick]])
        texts = []
        if len(ok):
            occ = occlude(model, x, typical, units)
            near = nearest(emb[pick[ok]])
            texts = [explanation_text(units, occ, i, near[i]) for i in range(len(ok))]
        table = pa.table({"row": pa.array(rows[pick[ok]], pa.int64()), "explanation": pa.array(texts, pa.string())},
                         schema=EXPLAIN_SCHEMA)
        atomic_write(explain_path(parts_files[c].parent, c), lambda tmp: pq.write_table(table, tmp))
        n_done += len(ok)
    return n_done
