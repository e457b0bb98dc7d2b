"""Anomaly scorers: outliers rank first, percentiles are calibrated, state round-trips exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medssl.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from medssl.errors import ConfigError, DataError, UnknownNameError
from medssl.anomaly import (
    ECODScorer,
    EnsembleScorer,
    KNNDistanceScorer,
    MahalanobisScorer,
    ReconstructionScorer,
    create_scorer,
    list_scorers,
    load_scorer,
)

SCORER_KW = {
    "ecod": {},
    "ensemble": {"members": [("ecod", {}), ("knn", {"k": 5}), ("iforest", {"n_estimators": 50})]},
    "iforest": {"n_estimators": 50},
    "knn": {"k": 5},
    "mahalanobis": {},
    "pseudo_label": {},
    "reconstruction": {"n_components": 3},
}


def _cloud(n: int = 300, d: int = 8, seed: int = 0) -> np.ndarray:
    # correlated Gaussian: a low-rank structure (same basis for every seed) plus noise
    basis = np.random.default_rng(1234).normal(size=(3, d))
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)) @ basis + 0.1 * rng.normal(size=(n, d))


def test_registry_lists_every_scorer() -> None:
    assert list_scorers() == ["ecod", "ensemble", "iforest", "knn", "mahalanobis", "pseudo_label",
                             "reconstruction"]
    with pytest.raises(UnknownNameError, match="Did you mean 'knn'"):
        create_scorer("kmn")


# pseudo_label scores along one learned direction: an outlier off that direction need not rank
# first (documented limit); its own outlier test is test_pseudo_label_learns_the_anomalies_direction
@pytest.mark.parametrize("name", sorted(set(SCORER_KW) - {"pseudo_label"}))
def test_obvious_outlier_gets_top_score_and_percentile_100(name: str) -> None:
    ref = _cloud()
    queries = np.vstack([_cloud(20, seed=1), ref.mean(0) + 25.0 * ref.std(0)])
    scorer = create_scorer(name, **SCORER_KW[name]).fit(torch.as_tensor(ref, dtype=torch.float32))
    s = scorer.score(queries)
    assert s.shape == (21,)
    assert int(np.argmax(s)) == 20
    p = scorer.percentile(s)
    assert p[20] == 100.0
    # percent of reference cases scoring <= each query, counted directly
    ref_scores = scorer.reference_scores_
    np.testing.assert_array_equal(p, [100.0 * np.count_nonzero(ref_scores <= v) / len(ref_scores) for v in s])
    # in-distribution queries spread over the reference percentiles, not all at the top
    assert np.median(p[:20]) < 90


@pytest.mark.parametrize("name", sorted(set(SCORER_KW) - {"ensemble"}))  # ensemble: means of ranks tie
def test_reference_percentiles_are_uniform(name: str) -> None:
    ref = _cloud()
    scorer = create_scorer(name, **SCORER_KW[name]).fit(ref)
    # the reference's own (calibration) scores map to 1/N, 2/N, ... 100 percent
    p = np.sort(scorer.percentile(scorer.reference_scores_))
    np.testing.assert_allclose(p, 100.0 * np.arange(1, len(ref) + 1) / len(ref))


@pytest.mark.parametrize("name", sorted(SCORER_KW))
def test_state_roundtrip_through_checkpoint_gives_identical_scores(name: str, tmp_path) -> None:
    ref, new = _cloud(), _cloud(50, seed=2)
    scorer = create_scorer(name, **SCORER_KW[name], normalize="standard").fit(ref)
    ckpt = Checkpoint(
        kind="model",
        meta={"encoder": {"name": "tabular_mlp", "kwargs": {}}, "scorer": scorer.name},
        tensors={f"scorer.{k}": v for k, v in scorer.state_dict().items()},
    )
    back_ck = load_checkpoint(save_checkpoint(tmp_path / "m.pt", ckpt))
    state = {k.removeprefix("scorer."): v for k, v in back_ck.tensors.items() if k.startswith("scorer.")}
    back = load_scorer(back_ck.meta["scorer"], state)
    assert type(back) is type(scorer)
    np.testing.assert_array_equal(back.score(new), scorer.score(new))
    np.testing.assert_array_equal(back.percentile(back.score(new)), scorer.percentile(scorer.score(new)))


def test_knn_matches_hand_computed_distances() -> None:
    ref = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [10.0, 10.0]])
    scorer = KNNDistanceScorer(k=2).fit(ref)
    # query (0, 1): distances 1, sqrt(2), 1, ... -> mean of the two nearest = 1.0
    np.testing.assert_allclose(scorer.score(np.array([[0.0, 1.0]])), [1.0])
    # leave-one-out reference scores (stored sorted): (0,0): neighbours at 1 and 2 -> 1.5;
    # (1,0): 1 and sqrt(5); (0,2): 2 and sqrt(5); (10,10): sqrt(164) and sqrt(181)
    np.testing.assert_allclose(scorer.reference_scores_,
                               [1.5, (1 + np.sqrt(5)) / 2, (2 + np.sqrt(5)) / 2, (np.sqrt(164) + np.sqrt(181)) / 2],
                               rtol=1e-12)


def test_knn_equals_sklearn_brute_force_at_scale_including_leave_one_out() -> None:
    """Past the sizes where torch.cdist switches to its matrix-product path (float32)."""
    from sklearn.neighbors import NearestNeighbors

    ref, query = _cloud(600, 32), _cloud(700, 32) * 1.5 + 0.3
    scorer = KNNDistanceScorer(k=7).fit(ref)
    dist, _ = NearestNeighbors(n_neighbors=7).fit(ref).kneighbors(query)
    np.testing.assert_allclose(scorer.score(query), dist.mean(axis=1), rtol=1e-9)
    loo, _ = NearestNeighbors(n_neighbors=8).fit(ref).kneighbors(ref)
    np.testing.assert_allclose(scorer.reference_scores_, np.sort(loo[:, 1:].mean(axis=1)), rtol=1e-9)
    # a tight cloud far from the origin (untrained encoders give such embeddings): float32 must
    # not lose the distances to cancellation
    # not lose the distances to cancellation, nor turn exact duplicates (queries that are
    # reference rows) into rounding noise
    far_ref = 50.0 + 1e-3 * ref
    far_query = np.concatenate([50.0 + 1e-3 * query, far_ref[:50]])
    from scipy.spatial.distance import cdist  # differences first: exact where sklearn's GEMM trick is not

    exact = np.sort(cdist(far_query, far_ref), axis=1)[:, :7].mean(axis=1)
    np.testing.assert_allclose(KNNDistanceScorer(k=7).fit(far_ref).score(far_query), exact, rtol=1e-9)


def test_mahalanobis_matches_scipy_formula() -> None:
    ref = _cloud(200, 4)
    scorer = MahalanobisScorer(estimator="empirical").fit(ref)
    x = ref[:5]
    mu, cov = ref.mean(0), np.cov(ref, rowvar=False, bias=True)
    expected = np.einsum("nd,de,ne->n", x - mu, np.linalg.inv(cov), x - mu)
    np.testing.assert_allclose(scorer.score(x), expected, rtol=1e-6)


def test_reconstruction_with_function_and_pca_on_subspace() -> None:
    ref = _cloud(200, 6)
    # data lies (up to noise) on a 3-D subspace: 3 PCA components rebuild it almost exactly
    pca3 = ReconstructionScorer(n_components=3, normalize="none").fit(ref)
    off = ref[:1] + 5.0 * np.linalg.svd(ref - ref.mean(0))[2][-1]  # step along a discarded direction
    assert pca3.score(ref[:1])[0] < 0.1
    np.testing.assert_allclose(pca3.score(off)[0], 25.0, rtol=0.05)  # 5 units off the subspace
    identity = ReconstructionScorer(reconstruct=lambda x: 0.5 * x, normalize="none").fit(ref)
    np.testing.assert_allclose(identity.score(ref[:3]), (0.25 * ref[:3] ** 2).sum(1))
    with pytest.raises(DataError, match="reconstruct="):
        ReconstructionScorer.from_state_dict(identity.state_dict())


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(DataError, match="2-D"):
        KNNDistanceScorer().fit(np.zeros(10))
    with pytest.raises(DataError, match="NaN"):
        KNNDistanceScorer(k=1).fit(np.array([[0.0], [np.nan], [1.0]]))
    with pytest.raises(DataError, match="not fitted"):
        KNNDistanceScorer().score(np.zeros((2, 2)))
    with pytest.raises(DataError, match="k=10 needs more than 10"):
        KNNDistanceScorer(k=10).fit(np.zeros((5, 2)))
    with pytest.raises(DataError, match="3 features but the scorer was fitted on 2"):
        KNNDistanceScorer(k=1).fit(np.eye(2)).score(np.zeros((1, 3)))
    with pytest.raises(ConfigError, match="normalize"):
        KNNDistanceScorer(normalize="zscore")


def test_ecod_matches_hand_computed_tail_probabilities() -> None:
    # column 0: 1, 2, 3, 4 (skewness 0 -> right tail is the "auto" tail); column 1: 0, 0, 0, 8
    # (right-skewed). n = 4, tails use (count + 1) / (n + 1) = (count + 1) / 5.
    ref = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 8.0]])
    scorer = ECODScorer().fit(ref)
    # query (0, 0): col 0 left 1/5, right 5/5; col 1 left (3+1)/5, right (4+1)/5
    #   left sum = log 5 + log(5/4); right sum = 0 + 0; auto = right -> max = log 5 + log 1.25
    # query (2.5, 9): col 0 left 3/5, right 3/5; col 1 left 5/5, right 1/5
    #   left = log(5/3); right = log(5/3) + log 5; auto = right -> max = log(5/3) + log 5
    s = scorer.score(np.array([[0.0, 0.0], [2.5, 9.0]]))
    np.testing.assert_allclose(s, [np.log(5) + np.log(1.25), np.log(5 / 3) + np.log(5)], rtol=1e-12)
    # a left-skewed column uses its left tail as "auto": column -(0, 0, 0, 8), query -9 -> log 5
    flipped = ECODScorer().fit(-ref[:, 1:])
    np.testing.assert_allclose(flipped.score(np.array([[-9.0]])), [np.log(5)], rtol=1e-12)
    assert flipped.left_skewed_.tolist() == [True] and scorer.left_skewed_.tolist() == [False, False]


def test_ecod_adds_evidence_over_dimensions() -> None:
    ref = _cloud(200, 6)
    one_dim = ref.mean(0).copy()
    one_dim[0] = ref[:, 0].max() + 1.0
    all_dims = ref.max(0) + 1.0
    s = ECODScorer().fit(ref).score(np.vstack([ref.mean(0), one_dim, all_dims]))
    assert s[0] < s[1] < s[2]
    np.testing.assert_allclose(s[2], 6 * np.log(201), rtol=1e-12)  # beyond every value in all 6 columns


def test_ecod_skew_tail_matches_hand_computed_weights() -> None:
    # column 0: 1, 2, 3, 4 (skewness 0 -> weight 0); column 1: 0, 0, 0, 8: mean 2, m2 = 12,
    # m3 = 48, skewness = 48 / 12^1.5 = 2 / sqrt(3), weight (power 2) = 4 / 3, right tail.
    ref = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 8.0]])
    scorer = ECODScorer(tail="skew").fit(ref)
    np.testing.assert_allclose(scorer.weights_, [0.0, 4.0 / 3.0], atol=1e-12)
    # (0, 9): col 1 right tail 1/5 -> 4/3 log 5; (100, 0): the symmetric column counts for nothing,
    # col 1 right tail (4 + 1) / 5 -> 0; (2.5, 8): col 1 right tail (1 + 1) / 5
    s = scorer.score(np.array([[0.0, 9.0], [100.0, 0.0], [2.5, 8.0]]))
    np.testing.assert_allclose(s, [4 / 3 * np.log(5), 0.0, 4 / 3 * np.log(5 / 2)], atol=1e-12)
    # a left-skewed column uses its left tail; skew_power=1 weighs by |skewness|
    flipped = ECODScorer(tail="skew", skew_power=1.0).fit(-ref[:, 1:])
    np.testing.assert_allclose(flipped.score(np.array([[-9.0], [9.0]])), [2 / np.sqrt(3) * np.log(5), 0.0], atol=1e-12)
    with pytest.raises(ConfigError, match="tail must be one of"):
        ECODScorer(tail="both")
    with pytest.raises(ConfigError, match="skew_power"):
        ECODScorer(tail="skew", skew_power=-1)


def test_ecod_skew_tail_state_roundtrip_and_plain_state_stays_plain() -> None:
    rng = np.random.default_rng(0)
    ref = np.hstack([rng.normal(size=(300, 3)), rng.exponential(size=(300, 2))])
    new = np.hstack([rng.normal(size=(40, 3)), rng.exponential(size=(40, 2))])
    scorer = ECODScorer(tail="skew", skew_power=1.5, normalize="standard").fit(ref)
    back = load_scorer("ecod", scorer.state_dict())
    assert (back.tail, back.skew_power, back.normalize) == ("skew", 1.5, "standard")
    np.testing.assert_array_equal(back.score(new), scorer.score(new))
    plain = ECODScorer().fit(ref)
    assert "weights" not in plain.state_dict()  # plain ECOD states keep their old keys
    assert load_scorer("ecod", plain.state_dict()).tail == "ecod"
    np.testing.assert_array_equal(load_scorer("ecod", plain.state_dict()).score(new), plain.score(new))


def test_ensemble_members_on_column_blocks_and_rank_average() -> None:
    rng = np.random.default_rng(0)
    ref = np.hstack([_cloud(300, 4), rng.normal(size=(300, 3))])
    ens = EnsembleScorer(members=[("ecod", {}), ("knn", {"k": 5})], columns=[(0, 4), (4, 7)]).fit(ref)
    assert ens.members[0].sorted_.shape == (300, 4) and ens.members[1].reference_.shape == (300, 3)
    q = np.vstack([ref[:5], np.r_[ref[0, :4], 30.0, 30.0, 30.0]])
    expected = np.mean([ens.members[0].percentile(ens.members[0].score(q[:, :4])),
                        ens.members[1].percentile(ens.members[1].score(q[:, 4:]))], axis=0)
    np.testing.assert_allclose(ens.score(q), expected)
    assert ens.score(q)[-1] >= 50.0  # knn member alone puts the last row at percentile 100
    back = load_scorer("ensemble", ens.state_dict())
    assert back.columns == [(0, 4), (4, 7)] and [m.name for m in back.members] == ["ecod", "knn"]
    np.testing.assert_array_equal(back.score(q), ens.score(q))
    with pytest.raises(ConfigError, match="one per member"):
        EnsembleScorer(members=[("ecod", {})], columns=[(0, 1), (1, 2)])
    with pytest.raises(ConfigError, match="another ensemble"):
        EnsembleScorer(members=[("ensemble", {})])


def test_pseudo_label_learns_the_anomalies_direction() -> None:
    # 400 normal rows in 6-D plus 20 unlabelled anomalies shifted along dimension 2 (+4 sd) that
    # are unremarkable in every other dimension
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(400, 6))
    anomalies = rng.normal(size=(20, 6))
    anomalies[:, 2] += 4.0
    ref = np.vstack([normal, anomalies])
    scorer = create_scorer("pseudo_label", contamination=0.05).fit(ref)
    # the pseudo-anomalies (top 5 % = 21 rows by skew-weighted ECOD) are mostly the planted group,
    # so the logistic direction is dimension 2
    assert int(np.argmax(np.abs(scorer.coef_))) == 2 and scorer.coef_[2] > 0
    assert np.abs(scorer.coef_[2]) > 3 * np.abs(np.delete(scorer.coef_, 2)).max()
    # score = log-odds of the fitted linear model on standardised features, by hand
    x = (ref - ref.mean(0)) / ref.std(0)
    np.testing.assert_allclose(scorer.score(ref), x @ scorer.coef_ + scorer.intercept_)
    # new cases: fresh anomalies of the same kind rank above fresh normals
    new_normal, new_anom = rng.normal(size=(200, 6)), rng.normal(size=(20, 6))
    new_anom[:, 2] += 4.0
    s = scorer.score(np.vstack([new_normal, new_anom]))
    assert np.mean(s[200:][:, None] > s[:200][None, :]) > 0.95
    assert np.median(scorer.percentile(s[200:])) > 90
    # the documented limit: an outlier on the *opposite* side of the learned direction scores low
    far = ref.mean(0).copy()
    far[2] -= 25.0 * ref[:, 2].std()
    assert scorer.percentile(scorer.score(far[None, :]))[0] < 10


def test_pseudo_label_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="contamination"):
        create_scorer("pseudo_label", contamination=0.6)
    with pytest.raises(ConfigError, match="normal_quantile"):
        create_scorer("pseudo_label", contamination=0.2, normal_quantile=0.9)
    with pytest.raises(ConfigError, match="C "):
        create_scorer("pseudo_label", C=0.0)
    with pytest.raises(ConfigError, match="base cannot be"):
        create_scorer("pseudo_label", base=("pseudo_label", {}))
    with pytest.raises(UnknownNameError):
        create_scorer("pseudo_label", base=("ecdo", {}))
    # another base: kNN distances pick the pseudo-anomalies; state keeps the base's name
    ref = _cloud()
    scorer = create_scorer("pseudo_label", base=("knn", {"k": 5}), contamination=0.1).fit(ref)
    back = load_scorer("pseudo_label", scorer.state_dict())
    assert back.base[0] == "knn" and back.contamination == 0.1 and back.C == 0.1
    np.testing.assert_array_equal(back.score(ref), scorer.score(ref))
