"""Anomaly scoring on real transaction logs: one-hot categoricals and the skewness-weighted ECOD
tail, fitted without labels on one half of the data and judged on the other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split

from medssl.data.transactions import encode_rows, fit_preprocessing, infer_schema
from medssl.data.transactions.encoding import one_hot_categoricals
from medssl.data.transactions.ingest import read_table
from medssl.errors import DataError
from medssl.anomaly import create_scorer


def _halves(shared_data: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    raw = read_table(shared_data / "transactions" / name)
    schema = infer_schema(raw)
    y = raw[schema.label_col].astype(int).to_numpy()
    ref, ev = train_test_split(np.arange(len(raw)), test_size=0.5, stratify=y, random_state=0)
    prep = fit_preprocessing(raw.iloc[ref], schema)
    x = encode_rows(raw, prep)
    return x[ref], x[ev], y[ref], y[ev], prep


def test_one_hot_categoricals_on_paysim(shared_data: Path) -> None:
    x_ref, _, _, _, prep = _halves(shared_data, "paysim_sample.csv")
    assert prep["cardinalities"] == [6]  # unknown + CASH_IN, CASH_OUT, DEBIT, PAYMENT, TRANSFER
    oh = one_hot_categoricals(x_ref, prep)
    assert oh.shape == (len(x_ref), 6 + 6)
    np.testing.assert_array_equal(oh[:, :6], x_ref[:, :6])  # numerics untouched
    np.testing.assert_array_equal(oh[:, 6:].sum(axis=1), np.ones(len(x_ref)))
    np.testing.assert_array_equal(oh[:, 6:].argmax(axis=1), x_ref[:, 6].astype(int))
    assert oh[:, 6].sum() == 0  # no unknown category among the training rows
    bad = x_ref[:3].copy()
    bad[:, 6] = [-1.0, 99.0, 5.0]  # out of range -> unknown
    assert one_hot_categoricals(bad, prep)[:, 6:].argmax(axis=1).tolist() == [0, 0, 5]
    with pytest.raises(DataError, match="width 7"):
        one_hot_categoricals(x_ref[:, :5], prep)


def test_skew_tail_ecod_finds_ulb_frauds_without_labels(shared_data: Path) -> None:
    # fitted on the reference half with its 6.6 % unlabelled frauds left in
    x_ref, x_ev, _, y_ev, _ = _halves(shared_data, "ulb_creditcard_a.csv")
    skew = create_scorer("ecod", tail="skew").fit(x_ref)
    s = skew.score(x_ev)
    auroc, auprc = roc_auc_score(y_ev, s), average_precision_score(y_ev, s)
    assert auroc > 0.9 and auprc > 0.75, (auroc, auprc)
    # the dimensions the frauds skew (V14, V12, V10, V17 ... in this data) carry the weight
    top = set(np.argsort(-skew.weights_)[:6].tolist())
    assert len(top & {9, 11, 13, 16}) >= 2, sorted(top)


def test_pseudo_label_beats_its_base_on_ulb_without_labels(shared_data: Path) -> None:
    # only the reference half: fit on one half of it (frauds left in, unlabelled), judge on the other
    x_ref, _, y_ref, _, prep = _halves(shared_data, "ulb_creditcard_a.csv")
    x = one_hot_categoricals(x_ref, prep)
    fit, val = train_test_split(np.arange(len(x)), test_size=0.5, stratify=y_ref, random_state=1)
    pseudo = create_scorer("pseudo_label").fit(x[fit])
    auprc = average_precision_score(y_ref[val], pseudo.score(x[val]))
    base = average_precision_score(y_ref[val], create_scorer("ecod", tail="skew").fit(x[fit]).score(x[val]))
    assert auprc > base + 0.01 and auprc > 0.88, (auprc, base)
    # its pseudo-anomalies: 5 % of the fit part, mostly real (unseen) frauds
    assert pseudo.coef_.shape == (x.shape[1],)
    top = np.argsort(-pseudo.score(x[fit]))[: int(round(0.05 * len(fit)))]
    assert y_ref[fit][top].mean() > 0.8
