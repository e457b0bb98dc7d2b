"""Transaction-log recipes: raw encoded columns next to the SCARF embedding.

Anomaly (``raw_pseudo_label``): features ``[raw one-hot | embedding]``; scorer the rank average of
two ``pseudo_label`` scorers (self-training from skewness-weighted ECOD), one on the raw one-hot
block and one on all columns. Few labels (``raw_score_logreg``): a logistic regression whose
strength C is picked by 3-fold cross-validated average precision on the labelled cases only, on
``[raw one-hot | anomaly percentile / 100]``. Both were chosen on labelled validation splits of
the reference halves of the shared transaction data (``benchmarks/_select_anomaly_transactions.py``),
never on the evaluation halves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from medssl.data.transactions.encoding import one_hot_categoricals
from medssl.domains.recipe import AnomalyRecipe, FewLabelRecipe, linear_head, register_anomaly_recipe, register_few_label_recipe

LOGREG_CS = (0.01, 0.1, 1.0, 10.0)
CV_FOLDS = 3


def raw_columns(x: torch.Tensor, preprocessing: dict[str, Any]) -> np.ndarray:
    """The encoded transaction itself ``(B, F)`` (slot 0 when items carry entity history)."""
    width = int(preprocessing["n_numeric"]) + len(preprocessing["cardinalities"])
    x = x.detach().cpu().double()
    if int(preprocessing.get("history", 0)):
        x = x.reshape(x.shape[0], -1, width + 1)[:, 0, :width]
    return one_hot_categoricals(x.numpy(), preprocessing).astype(np.float64)


def raw_and_embedding(x: torch.Tensor, emb: torch.Tensor, preprocessing: dict[str, Any]) -> np.ndarray:
    """``[raw one-hot (B, R) | embedding (B, D)]``."""
    return np.hstack([raw_columns(x, preprocessing), emb.detach().cpu().double().numpy()])


def _pseudo_label_pair(n_reference: int, emb_dim: int, feature_dim: int) -> tuple[str, dict[str, Any]]:
    n_raw = feature_dim - emb_dim
    return "ensemble", {"members": [("pseudo_label", {}), ("pseudo_label", {})], "columns": [(0, n_raw), None]}


RAW_PSEUDO_LABEL = register_anomaly_recipe(AnomalyRecipe(
    name="raw_pseudo_label",
    description="rank average of pseudo_label(raw one-hot) and pseudo_label(raw one-hot + embedding)",
    features=raw_and_embedding,
    scorer=_pseudo_label_pair,
))


def raw_and_percentile(x: torch.Tensor, emb: torch.Tensor, percentile: np.ndarray,
                       preprocessing: dict[str, Any]) -> np.ndarray:
    """``[raw one-hot (B, R) | anomaly percentile / 100 (B, 1)]``."""
    pct = np.asarray(percentile, dtype=np.float64).reshape(-1, 1) / 100.0
    return np.hstack([raw_columns(x, preprocessing), pct])


def fit_logreg_cv(features: np.ndarray, y: np.ndarray, groups: np.ndarray, n_classes: int, seed: int) -> nn.Linear:
    """Standardised logistic regression, C by stratified 3-fold average precision (one-vs-rest
    macro for more classes; plain C=1 when a class has fewer than 3 cases), folded into a head."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    z = scaler.transform(features)
    if int(np.bincount(y, minlength=n_classes).min()) >= CV_FOLDS:
        cv = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed)
        scoring = "average_precision" if n_classes == 2 else "roc_auc_ovr"
        clf = LogisticRegressionCV(Cs=list(LOGREG_CS), cv=cv, scoring=scoring, max_iter=2000, l1_ratios=(0.0,),
                                   use_legacy_attributes=False)
    else:
        clf = LogisticRegression(max_iter=2000)
    clf.fit(z, y)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    coef = clf.coef_ / scale
    bias = clf.intercept_ - coef @ scaler.mean_
    return linear_head(coef, bias, n_classes)


RAW_SCORE_LOGREG = register_few_label_recipe(FewLabelRecipe(
    name="raw_score_logreg",
    description="logistic regression (C by cross-validation) on raw one-hot columns + anomaly percentile",
    features=raw_and_percentile,
    fit=fit_logreg_cv,
))


# How a transaction case is shown on the review page (medssl.domains.case_views).

import pandas as pd  # noqa: E402  (the case view sits after the recipes)

from medssl.domains.case_views import (  # noqa: E402
    CaseContext,
    TablesView,
    TableSection,
    deviating_features,
    register_case_view,
)

# manifest columns that are no feature of a transaction: ids, labels, splits, positions, and the
# transaction time (it orders an entity's history)
NON_FEATURE_COLUMNS = {"case_id", "patient_id", "domain", "label", "split", "row", "time", "array_index", "frame"}


def numeric_columns(manifest: pd.DataFrame) -> list[str]:
    """Manifest columns holding a case's numeric features (``NON_FEATURE_COLUMNS`` excluded)."""
    return [c for c in manifest.columns if c not in NON_FEATURE_COLUMNS and pd.api.types.is_numeric_dtype(manifest[c])
            and not pd.api.types.is_bool_dtype(manifest[c])]


@register_case_view("transactions")
def transaction_case_view(ctx: CaseContext) -> TablesView:
    """The transaction's row, how it differs from its entity's other transactions (from all when the
    entity has fewer than 3 others), its entity's history, and why it stands out
    (``medssl.domains.transaction_view``). Labels and splits only for ``ctx.show_reference``."""
    from medssl.domains.transaction_view import MIN_OWN_HISTORY, hidden_columns, why_flagged

    rows, row = ctx.rows, ctx.row
    hidden = hidden_columns(ctx.data_dir, ctx.show_reference)
    visible = [c for c in rows.columns if c not in hidden]
    sections = [TableSection("The transaction", pd.DataFrame([row])[visible])]
    cols = numeric_columns(rows)
    own = rows["patient_id"] == row["patient_id"]
    history = rows[own]
    if cols:
        values = rows.loc[ctx.index, cols].to_numpy(dtype=float)
        others = own & (rows.index != ctx.index)
        if others.sum() >= MIN_OWN_HISTORY:
            reference, title = rows.loc[others, cols], f"How it differs from its entity's {int(others.sum())} other transactions"
        else:
            reference, title = rows[cols], f"How it differs from all {len(rows)} transactions"
        sections.append(TableSection(title, deviating_features(values, reference.to_numpy(dtype=float), cols)))
    if len(history) < 2:
        alone = (rows["patient_id"] == rows["case_id"]).all()
        sections.append(TableSection("The entity's history", caption="No other transaction of this entity in the data."
                                     + (" It was ingested without --entity-col: each transaction is its own entity."
                                        if alone else "")))
    else:
        if "time" in history.columns:
            history = history.sort_values("time", kind="stable")
        sections.append(TableSection("The entity's history", history[visible]))
    if cols and len(rows) > 2:
        all_values = rows[cols].to_numpy(dtype=float)
        table, text = why_flagged(values, all_values, cols, all_values, ctx.index)
        sections.append(TableSection("Why it stands out", table, caption=text))
    return TablesView(sections)
