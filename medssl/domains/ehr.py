"""The EHR domain's few-label recipe, and EHR cases as the review page shows them.

Few labels (``ehr_summary_hybrid``, the EHR default): features ``[embedding (D) | per-variable
summaries (F)]``. The summaries are the domain's established hand features (last/min/max/mean of
each variable over the stay, their squares, how often it was measured, and the static fields Age,
Gender, Height, ICUType, Weight), computed from the case's stored grid row (written at ingest,
named by the ingest record), so every command reads the same numbers and any EHR DATA_DIR
(PhysioNet 2012, MIMIC-III, long CSV) has them. The head is a logistic regression whose column
block (summaries, embedding+summaries, embedding) and strength are chosen by patient-grouped
cross-validation on the labelled cases only; metrics.json records the candidates and the choice.
Why: on PhysioNet 2012 these summaries beat every sequence encoder here, and which block
generalises best depends on the data and the number of labels, so the labelled cases decide.

Case view: a stay's measured values over time as small multiples with units, normal ranges,
demographics and impossible values called out (``medssl.domains.vitals_view``).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from medssl.domains.case_views import CaseContext, CaseViewData, not_installed, register_case_view
from medssl.domains.recipe import FewLabelRecipe, linear_head, register_few_label_recipe
from medssl.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_SHOWN = 6  # variables shown at first: the stay's most often measured (the vitals)


def ehr_observations(x: torch.Tensor, preprocessing: dict[str, Any]) -> pd.DataFrame:
    """Observed points of an EHR case tensor ``(2C, T)`` (values, then masks; see the EHR dataset)
    in the variables' own units: columns time_h, variable, value (one row per measured bin)."""
    names = list(preprocessing["variables"])
    n_var, n_chan = len(names), x.shape[0] // 2
    values, mask = x[:n_var].numpy(), x[n_chan:n_chan + n_var].numpy()
    mean = np.asarray(preprocessing["mean"], np.float32)[:n_var, None]
    std = np.asarray(preprocessing["std"], np.float32)[:n_var, None]
    raw = values * std + mean
    var_idx, t_idx = np.nonzero(mask > 0.5)
    return pd.DataFrame({
        "time_h": t_idx * float(preprocessing.get("step_hours", 1.0)),
        "variable": [names[i] for i in var_idx],
        "value": raw[var_idx, t_idx].astype(float),
    })


@register_case_view("ehr")
def ehr_case_view(ctx: CaseContext) -> CaseViewData:
    """The stay as small multiples (``medssl.domains.vitals_view``): its measured points per
    variable with units and normal ranges, the most often measured variables first, its
    demographics and ICU type, and the impossible values its source recorded."""
    from medssl.data.manifest import read_errors
    from medssl.domains.vitals_view import stay_statics, vitals_view

    dataset = ctx.dataset
    if dataset is None:
        return not_installed(ctx.domain)
    obs = ehr_observations(dataset[ctx.index], dataset.preprocessing)
    counts = obs["variable"].value_counts()
    default = sorted(sorted(counts.index, key=lambda v: (-counts[v], v))[:DEFAULT_SHOWN])
    names, static = stay_statics(ctx.data_dir, ctx.row)
    return vitals_view(obs, default, names, static, read_errors(ctx.data_dir), str(ctx.row["case_id"]))


# ---- few labels: per-variable summaries next to the embedding (the EHR default recipe) ------------

SUMMARY_STATS = ("last", "min", "max", "mean")  # of a variable's observed bins, standardised units
SQUARED_STATS = ("last", "mean")  # also given squared (U-shaped risks)
SUMMARY_CLIP = 4.0  # standardised values are clipped to +-SUMMARY_CLIP before summarising (lab outliers)
LOGREG_CS = (0.001, 0.003, 0.01, 0.03, 0.1, 1.0)
FALLBACK_C = 0.01  # when no cross-validation is possible (a class held by fewer than 2 patients)
MAX_FOLDS = 5


def summary_names(preprocessing: dict[str, Any]) -> list[str]:
    """Names of the columns ``ehr_summaries`` gives, in order (``<var>_<stat>``, ``<static>``, ...)."""
    names, statics = list(preprocessing["variables"]), list(preprocessing["static_names"])
    cols = [f"{v}_{s}" for s in SUMMARY_STATS for v in names]
    cols += [f"{v}_{s}^2" for s in SQUARED_STATS for v in names]
    cols += [f"{v}_count" for v in names] + [f"{v}_missing" for v in names]
    return cols + statics + [f"{s}_missing" for s in statics]


def ehr_summaries(x: torch.Tensor, preprocessing: dict[str, Any]) -> np.ndarray:
    """Per-variable summaries of EHR items ``x`` ``(B, 2C, T)`` (see ``medssl.data.ehr.dataset``)
    as float64 ``(B, 8 V + 2 S)``, named by ``summary_names``.

    For each of the V variables, over the bins where it was measured, in standardised units
    (train-split mean/std of the checkpoint's preprocessing, clipped to +-``SUMMARY_CLIP``): last,
    min, max, mean (0 = the train mean when never measured), then the squares of last and mean
    (U-shaped risks: both low and high blood pressure, temperature, sodium are bad), the share of bins measured
    and a never-measured indicator; then the S static descriptors (standardised, 0 when unknown)
    and their unknown indicators. Everything comes from the stored grid row, so fine-tune,
    evaluate and score read exactly the same numbers.
    """
    if "variables" not in preprocessing or "static_names" not in preprocessing:
        raise ConfigError("the EHR summary recipe needs a checkpoint of EHR grids (preprocessing with variables "
                          "and static_names); re-run `medssl pretrain` on a `medssl ingest ehr` DATA_DIR")
    n_var, n_static = len(preprocessing["variables"]), len(preprocessing["static_names"])
    x = x.detach().cpu().double()
    n_chan = x.shape[1] // 2
    values = x[:, :n_var].clamp(-SUMMARY_CLIP, SUMMARY_CLIP)
    seen = x[:, n_chan:n_chan + n_var] > 0.5
    count = seen.sum(dim=2)
    any_seen = count > 0
    t = torch.arange(x.shape[2], dtype=torch.float64)
    last_bin = torch.where(seen, t, torch.full_like(t, -1.0)).argmax(dim=2, keepdim=True)
    last = values.gather(2, last_bin).squeeze(2)
    big = torch.full_like(values, float("inf"))
    low = torch.where(seen, values, big).amin(dim=2)
    high = torch.where(seen, values, -big).amax(dim=2)
    mean = torch.where(seen, values, torch.zeros_like(values)).sum(dim=2) / count.clamp(min=1)
    last, low, high, mean = (torch.where(any_seen, s, torch.zeros_like(s)) for s in (last, low, high, mean))
    stats = torch.cat([last, low, high, mean], dim=1)
    static = x[:, n_var:n_var + n_static, 0].clamp(-SUMMARY_CLIP, SUMMARY_CLIP)
    static_known = x[:, n_chan + n_var:n_chan + n_var + n_static, 0] > 0.5
    out = torch.cat([stats, last**2, mean**2, count / x.shape[2], (~any_seen).double(),
                     torch.where(static_known, static, torch.zeros_like(static)), (~static_known).double()], dim=1)
    return out.numpy()


def summary_hybrid_features(x: torch.Tensor, emb: torch.Tensor, percentile: np.ndarray,
                            preprocessing: dict[str, Any]) -> np.ndarray:
    """``[embedding (B, D) | ehr_summaries (B, F)]`` float64 (the anomaly percentile is not read)."""
    return np.hstack([emb.detach().cpu().double().numpy(), ehr_summaries(x, preprocessing)])


def _cv_score(z: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], c: float,
              n_classes: int) -> tuple[float, np.ndarray]:
    """AUROC (one-vs-rest macro for more classes) of pooled out-of-fold probabilities ``(N, n_classes)``, and those."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    proba = np.zeros((len(y), n_classes))
    for tr, va in folds:
        clf = LogisticRegression(C=c, max_iter=2000).fit(z[tr], y[tr])
        proba[np.ix_(va, clf.classes_)] = clf.predict_proba(z[va])
    present = np.unique(y)
    if n_classes == 2:
        return float(roc_auc_score(y, proba[:, 1])), proba
    sub = proba[:, present] / np.clip(proba[:, present].sum(axis=1, keepdims=True), 1e-12, None)
    return float(roc_auc_score(y, sub, multi_class="ovr", labels=present)), proba


def _balanced_cut(y: np.ndarray, p1: np.ndarray) -> float | None:
    """The cut-off on out-of-fold P(class 1) with the best balanced accuracy (Youden's J), halfway
    to the next lower score; ``None`` when predicting nobody positive is best."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, p1)
    best = int(np.argmax(tpr - fpr))
    if not np.isfinite(thr[best]):
        return None
    below = p1[p1 < thr[best]]
    return float((thr[best] + below.max()) / 2) if below.size else float(thr[best])


def _grouped_folds(y: np.ndarray, groups: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``StratifiedGroupKFold`` folds by patient (k = min(MAX_FOLDS, patients of the rarest class));
    ``[]`` when a class is held by fewer than 2 patients."""
    from sklearn.model_selection import StratifiedGroupKFold

    per_class = [len(np.unique(groups[y == c])) for c in np.unique(y)]
    k = min([MAX_FOLDS, *per_class])
    if len(per_class) < 2 or k < 2:
        return []
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in splitter.split(np.zeros(len(y)), y, groups)
            if len(np.unique(y[tr])) == len(per_class) and len(va)]


def fit_summary_hybrid(features: np.ndarray, y: np.ndarray, groups: np.ndarray, n_classes: int, seed: int,
                       emb_dim: int = 0) -> nn.Linear:
    """Logistic regression on standardised ``summary_hybrid_features`` ``(N, D + F)``: the column
    block (``summaries``, ``embedding+summaries``, ``embedding``: the first ``emb_dim`` columns) and strength C (``LOGREG_CS``)
    with the best AUROC of out-of-fold predictions over patient-grouped folds of the labelled
    cases only; refitted on all of them and folded into ``nn.Linear(D + F, n_classes)`` (left-out
    columns weigh 0). With two classes the head's bias carries the cut-off on P(class 1) with the
    best balanced accuracy of the chosen candidate's out-of-fold predictions (as the classic modes'
    threshold: rankings unchanged, predicted labels no longer all the majority class).
    ``head.selection`` records the candidates' scores, the choice and the threshold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features = np.nan_to_num(np.asarray(features, dtype=np.float64))
    emb = np.arange(features.shape[1]) < emb_dim
    blocks = {"summaries": ~emb, "embedding+summaries": np.ones(features.shape[1], bool), "embedding": emb}
    if not emb.any():  # no embedding columns: one block
        blocks = {"summaries": ~emb}
    scaler = StandardScaler().fit(features)
    z = scaler.transform(features)
    folds = _grouped_folds(y, np.asarray(groups).astype(str), seed)
    scores: dict[str, float] = {}
    chosen, best = (next(iter(blocks)) if len(blocks) == 1 else "embedding+summaries", FALLBACK_C), -np.inf
    best_oof = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notes on tiny folds
        for name, cols in blocks.items():
            for c in LOGREG_CS if folds and cols.any() else ():
                score, oof = _cv_score(z[:, cols], y, folds, c, n_classes)
                scores[f"{name} C={c:g}"] = round(score, 4)
                if score > best + 1e-9:
                    chosen, best, best_oof = (name, c), score, oof
        cols = blocks[chosen[0]]
        clf = LogisticRegression(C=chosen[1], max_iter=2000).fit(z[:, cols], y)
    coef = np.zeros((clf.coef_.shape[0], features.shape[1]))
    coef[:, cols] = clf.coef_
    intercept = clf.intercept_
    if len(clf.classes_) < n_classes:  # a class absent from the labelled cases: never predicted
        full, bias = np.zeros((n_classes, features.shape[1])), np.full(n_classes, -1e4)
        rows = clf.classes_ if coef.shape[0] == len(clf.classes_) else clf.classes_[1:]
        full[rows], bias[rows] = coef, intercept
        coef, intercept = full, bias
    cut = None
    if n_classes == 2 and coef.shape[0] == 1 and best_oof is not None:  # the two-class decision threshold
        cut = _balanced_cut(y, best_oof[:, 1])
        if cut is not None:  # argmax of the head = P(class 1) >= cut; the ranking does not change
            cut = min(max(cut, 1e-6), 1 - 1e-6)
            intercept = intercept - np.log(cut / (1 - cut))
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    coef = coef / scale
    head = linear_head(coef, intercept - coef @ scaler.mean_, n_classes)
    head.selection = {  # type: ignore[assignment]  (plain attribute, written into metrics.json by finetune)
        "metric": f"AUROC of out-of-fold predictions, {len(folds)}-fold cross-validation grouped by patient on the "
                  "labelled cases only" if folds else "none: a class is held by fewer than 2 patients (fallback)",
        "folds": len(folds),
        "candidates": scores,
        "chosen": f"{chosen[0]} C={chosen[1]:g}",
        "threshold": None if cut is None else round(cut, 6),  # P(class 1) cut, best out-of-fold balanced accuracy
    }
    log.info("EHR summary hybrid: chose %s C=%g (CV AUROC %.4f)", chosen[0], chosen[1], best)
    return head


SUMMARY_HYBRID = register_few_label_recipe(FewLabelRecipe(
    name="ehr_summary_hybrid",
    description="logistic regression on [embedding | per-variable summaries + static fields]; column block and "
                "strength chosen by patient-grouped cross-validated AUROC on the labelled cases",
    features=summary_hybrid_features,
    fit=fit_summary_hybrid,
    fit_reads_emb_dim=True,
))
