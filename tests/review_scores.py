"""Real score files for the review-store and app tests, built from the real PneumoniaMNIST arrays.

``medssl score`` exists (tested in test_score.py; test_app_case_domains.py runs pretrain -> score
for every domain), but it needs a trained model file. These review fixtures instead use a small real
model fitted in seconds on the real train images, whose outputs the review tests can recompute:
the anomaly score is the pixel-space distance of a validation image from the mean normal (label 0)
train image, and a logistic regression on the pixels gives the predicted label and probability.
The score file has exactly the ``medssl score`` columns (DESIGN.md); unlike ``medssl score`` output,
``scored_at`` is an ISO-8601 string and the file records no ``medssl.data_dir`` metadata (the review
store finds the manifest beside the score file).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from medssl.data import ErrorLog, write_manifest
from medssl.data.imaging.npz import scan_npz

NPZ = Path("imaging") / "pneumoniamnist_trainval.npz"


def build_real_scores(shared_data: Path, data_dir: Path, n_cases: int = 60, flag_top: int = 12) -> Path:
    """Write ``data_dir/manifest.parquet`` (the first ``n_cases`` val images) and
    ``data_dir/scores.parquet``; the ``flag_top`` highest scores are flagged. Returns the score path.
    """
    arrays = np.load(shared_data / NPZ)
    train_images = arrays["train_images"][::6]  # the train array is ordered by class: stride over it
    train_x = train_images.reshape(len(train_images), -1).astype(np.float32) / 255.0
    train_y = arrays["train_labels"][::6].reshape(-1)
    val_x = arrays["val_images"][:n_cases].reshape(n_cases, -1).astype(np.float32) / 255.0

    clf = LogisticRegression(max_iter=300).fit(train_x, train_y)
    proba = clf.predict_proba(val_x)
    mean_normal = train_x[train_y == 0].mean(axis=0)
    score = np.linalg.norm(val_x - mean_normal, axis=1)
    percentile = pd.Series(score).rank(pct=True).to_numpy() * 100.0
    flagged = np.zeros(n_cases, dtype=bool)
    flagged[np.argsort(-score)[:flag_top]] = True
    model_id = hashlib.sha256(clf.coef_.tobytes() + clf.intercept_.tobytes()).hexdigest()[:16]

    # The manifest is the real npz ingest's (medssl.data.imaging.npz.scan_npz), cut to these val images.
    manifest = scan_npz(shared_data / NPZ, ErrorLog())
    manifest = manifest[manifest["array_key"] == "val_images"].iloc[:n_cases].reset_index(drop=True)
    case_ids = manifest["case_id"].tolist()
    assert manifest["array_index"].tolist() == list(range(n_cases))
    write_manifest(manifest, data_dir)
    scores = pd.DataFrame({
        "case_id": case_ids, "patient_id": case_ids, "domain": "imaging",
        "anomaly_score": score.astype(np.float64), "anomaly_percentile": percentile,
        "flagged": flagged, "predicted_label": [str(c) for c in clf.classes_[proba.argmax(axis=1)]],
        "predicted_proba": proba.max(axis=1), "model_id": model_id,
        "scored_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    })
    path = data_dir / "scores.parquet"
    scores.to_parquet(path, index=False)
    # Pixel vectors as the embeddings file (medssl score --embeddings layout: case_id, embedding).
    pd.DataFrame({"case_id": case_ids, "embedding": list(val_x)}).to_parquet(data_dir / "embeddings.parquet", index=False)
    return path
