"""MoCo, SwaV, Barlow Twins and VICReg: each method's wiring against a hand-written reference of the
lightly loss it uses, one exact value per loss, the loss falling on real PneumoniaMNIST images, and a
CLI pretrain -> ``weights_only`` load -> ``medssl finetune`` per method."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medssl.cli import main
from medssl.data import get_domain, read_manifest
from medssl.encoders import create_encoder
from medssl.errors import ConfigError
from medssl.methods import create_method
from medssl.methods.base import METHODS
from medssl.transforms.batched import batched

NPZ = "imaging/pneumoniamnist_trainval.npz"
NEW = ("moco", "swav", "barlow_twins", "vicreg")
SMALL = {"moco": {"queue_size": 64}, "swav": {"n_prototypes": 16}, "barlow_twins": {"projection_dim": 64, "hidden_dim": 64},
         "vicreg": {"projection_dim": 64, "hidden_dim": 64}}


def _method(name: str, **kw: object):
    torch.manual_seed(0)
    return create_method(name, create_encoder("small_cnn", in_channels=1, width=4), **{**SMALL[name], **kw})


def _batch(g: torch.Generator, b: int = 8) -> dict[str, torch.Tensor]:
    x = torch.rand(b, 1, 28, 28, generator=g)
    return {"view1": x, "view2": (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1),
            "patient": torch.arange(b), "index": torch.arange(b)}


# ---------------------------------------------------------------- hand-written references (numpy, float64)

def _np_infonce(q: np.ndarray, k: np.ndarray, queue: np.ndarray, t: float) -> float:
    """MoCo: per query, -log exp(q.k/t) / (exp(q.k/t) + sum_j exp(q.queue_j/t)) on unit vectors."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    k = k / np.linalg.norm(k, axis=1, keepdims=True)
    out = []
    for i in range(len(q)):
        pos = math.exp(q[i] @ k[i] / t)
        neg = sum(math.exp(q[i] @ n / t) for n in queue)
        out.append(-math.log(pos / (pos + neg)))
    return float(np.mean(out))


def _np_sinkhorn(scores: np.ndarray, eps: float, iters: int) -> np.ndarray:
    """SwaV's Sinkhorn-Knopp: Q = exp(S/eps)^T, rows (prototypes) then columns (cases) rescaled."""
    q = np.exp(scores / eps).T
    q /= q.sum()
    k, b = q.shape
    for _ in range(iters):
        q /= q.sum(axis=1, keepdims=True) * k
        q /= q.sum(axis=0, keepdims=True) * b
    return (q * b).T


def _np_swav(s1: np.ndarray, s2: np.ndarray, t: float = 0.1, eps: float = 0.05, iters: int = 3) -> float:
    def ce(s: np.ndarray, q: np.ndarray) -> float:
        z = s / t
        logp = z - z.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        return float(-(q * logp).sum(axis=1).mean())

    return 0.5 * (ce(s2, _np_sinkhorn(s1, eps, iters)) + ce(s1, _np_sinkhorn(s2, eps, iters)))


def _np_barlow(a: np.ndarray, b: np.ndarray, lam: float) -> float:
    za = (a - a.mean(0)) / np.sqrt(a.var(0) + 1e-5)
    zb = (b - b.mean(0)) / np.sqrt(b.var(0) + 1e-5)
    c = za.T @ zb / len(a)
    d = c.shape[0]
    return float(sum((1 - c[i, i]) ** 2 for i in range(d)) + lam * sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j))


def _np_vicreg(a: np.ndarray, b: np.ndarray, lam: float = 25.0, mu: float = 25.0, nu: float = 1.0) -> float:
    def var(z: np.ndarray) -> float:
        return float(np.maximum(0, 1 - np.sqrt(z.var(0, ddof=1) + 1e-4)).mean())

    def cov(z: np.ndarray) -> float:
        c = np.cov(z, rowvar=False)
        return float((c ** 2).sum() - (np.diag(c) ** 2).sum()) / z.shape[1]

    return lam * float(((a - b) ** 2).mean()) + mu * 0.5 * (var(a) + var(b)) + nu * (cov(a) + cov(b))


def test_moco_loss_is_infonce_against_its_queue_and_enqueues_keys() -> None:
    m = _method("moco", temperature=0.2)
    batch = _batch(torch.Generator().manual_seed(0))
    queue = m.criterion.memory_bank.bank.clone()  # (64, 128) random unit vectors at the start
    q, k = m.query(batch["view1"]), m.key(batch["view2"])
    loss = m.training_loss(batch)
    ref = _np_infonce(q.detach().double().numpy(), k.double().numpy(), queue.double().numpy(), 0.2)
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    assert not k.requires_grad  # keys come from the momentum copy
    torch.testing.assert_close(m.criterion.memory_bank.bank[:8], F.normalize(k, dim=1))  # this batch's keys queued
    torch.testing.assert_close(m.criterion.memory_bank.bank[8:], queue[8:])


def test_moco_exact_value_and_momentum_update() -> None:
    m = _method("moco", temperature=1.0)
    e = torch.eye(3)
    m.criterion.memory_bank.bank = torch.zeros(64, 3)
    m.criterion.memory_bank.bank[:2] = e[1:]  # two orthogonal negatives, 62 zero vectors (cos 0)
    # q = k = e0, T = 1: -log(e / (e + 64 * 1)) = log(1 + 64/e)
    assert m.criterion(e[:1].requires_grad_(), e[:1]).item() == pytest.approx(math.log(1 + 64 / math.e), abs=1e-6)
    online = {n: p.detach().clone() for n, p in m.encoder.named_parameters()}
    before = {n: p.detach().clone() for n, p in m.key_encoder.named_parameters()}
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(1.0)
    m.on_train_step_end(0, 10)  # cosine schedule at step 0: momentum 0.99
    for n, p in m.key_encoder.named_parameters():
        torch.testing.assert_close(p, 0.99 * before[n] + 0.01 * (online[n] + 1.0))
        assert not p.requires_grad


def test_swav_loss_matches_hand_written_sinkhorn_and_exact_value() -> None:
    m = _method("swav")
    batch = _batch(torch.Generator().manual_seed(1))
    loss = m.training_loss(batch)
    assert loss.ndim == 0
    w = m.prototypes.heads[0].weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(16))  # prototypes renormalised before the step
    with torch.no_grad():
        s1, s2 = m.scores(batch["view1"]).double().numpy(), m.scores(batch["view2"]).double().numpy()
    assert loss.item() == pytest.approx(_np_swav(s1, s2), rel=1e-5)
    # all scores equal: Sinkhorn gives uniform codes 1/K and the predicted softmax is uniform, so the loss is log K
    assert m.criterion([torch.zeros(8, 16), torch.zeros(8, 16)], []).item() == pytest.approx(math.log(16), abs=1e-6)


def test_swav_prototypes_stay_fixed_for_the_first_steps() -> None:
    m = _method("swav", freeze_prototypes_steps=2)
    batch = _batch(torch.Generator().manual_seed(4))
    m.training_loss(batch).backward()
    assert m.prototypes.heads[0].weight.grad is None and m.projection.layers[0].weight.grad is not None
    m.on_train_step_end(2, 10)  # two optimizer steps done
    m.training_loss(batch).backward()
    assert m.prototypes.heads[0].weight.grad is not None
    assert int(m.state_dict()["steps_done"]) == 2  # in the Lightning state: a resumed run keeps counting


def test_barlow_twins_loss_matches_hand_written_cross_correlation_and_exact_value() -> None:
    m = _method("barlow_twins", lambda_param=0.01)
    batch = _batch(torch.Generator().manual_seed(2))
    loss = m.training_loss(batch)
    with torch.no_grad():
        za, zb = m.project(batch["view1"]).double().numpy(), m.project(batch["view2"]).double().numpy()
    assert loss.item() == pytest.approx(_np_barlow(za, zb, 0.01), rel=1e-4)
    # one feature, views of opposite sign: C = -1 (up to batch norm's eps), loss (1 - (-1))^2 = 4
    a = torch.tensor([[1.0], [-1.0]])
    assert m.criterion(a, -a).item() == pytest.approx(4.0, rel=1e-4)


def test_vicreg_loss_matches_hand_written_terms_and_exact_values() -> None:
    m = _method("vicreg")
    batch = _batch(torch.Generator().manual_seed(3))
    loss = m.training_loss(batch)
    with torch.no_grad():
        za, zb = m.project(batch["view1"]).double().numpy(), m.project(batch["view2"]).double().numpy()
    assert loss.item() == pytest.approx(_np_vicreg(za, zb), rel=1e-4)
    # identical views, a dead feature: variance hinge 1 - sqrt(1e-4) = 0.99 on 1 of 2 features -> 25 * 0.495
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert m.criterion(z, z.clone()).item() == pytest.approx(25 * 0.495, abs=1e-5)
    # identical views, two copies of one feature (std sqrt 2 > 1): only covariance, 2 * (2^2 + 2^2) / 2 = 8
    z = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    assert m.criterion(z, z.clone()).item() == pytest.approx(8.0, abs=1e-4)


@pytest.mark.parametrize(("name", "options", "match"), [
    ("moco", {"queue_size": -1}, "queue_size=-1: must be a whole number >= 0"),
    ("moco", {"temperature": 0.0}, "temperature=0.0: must be > 0"),
    ("moco", {"momentum": 1.5}, "momentum=1.5: must be between 0 and 1"),
    ("swav", {"n_prototypes": 0}, "'n_prototypes': 0}: head sizes must be whole numbers"),
    ("swav", {"sinkhorn_epsilon": -0.1}, "sinkhorn_epsilon=-0.1: must be > 0"),
    ("swav", {"freeze_prototypes_steps": -1}, "freeze_prototypes_steps=-1: must be a whole number >= 0"),
    ("barlow_twins", {"lambda_param": -1.0}, "lambda_param=-1.0: must be >= 0"),
    ("vicreg", {"num_layers": 1}, "num_layers=1: the head has at least 2 layers"),
    ("vicreg", {"projection_dim": 0}, "'projection_dim': 0}: head sizes must be whole numbers"),
])
def test_bad_options_are_one_line_config_errors(name: str, options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        create_method(name, create_encoder("small_cnn", in_channels=1, width=4), **options)
    assert "\n" not in str(err.value)


def test_every_new_method_declares_what_medssl_methods_prints() -> None:
    for name in NEW:
        cls = METHODS.get(name)
        assert cls.family and cls.summary and cls.lightly_parts and cls.pairing == "augment"
        assert cls.supported_domains is None  # only two augmented views + any encoder: every domain


# ---------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def small_data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 train (60 normal, 100 pneumonia) + 40 val real PneumoniaMNIST images, ingested with `medssl ingest images`."""
    tmp = tmp_path_factory.mktemp("redundancy")
    with np.load(shared_data / NPZ) as z:
        ty, vy = z["train_labels"].ravel(), z["val_labels"].ravel()
        tr = np.sort(np.concatenate([np.flatnonzero(ty == 0)[:60], np.flatnonzero(ty == 1)[:100]]))
        va = np.sort(np.concatenate([np.flatnonzero(vy == 0)[:20], np.flatnonzero(vy == 1)[:20]]))
        np.savez(tmp / "cut.npz", train_images=z["train_images"][tr], train_labels=z["train_labels"][tr],
                 val_images=z["val_images"][va], val_labels=z["val_labels"][va])
    assert main(["-q", "ingest", "images", "--format", "npz", str(tmp / "cut.npz"), "--out", str(tmp / "data")]) == 0
    return tmp / "data"


@pytest.fixture
def one_thread():
    """One intra-op thread, as the pretrain loop uses on CPU: tiny convolutions on 2 busy cores run
    ~20x slower with two threads fighting over them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _eval_loss(m, held: dict[str, torch.Tensor], others: torch.Tensor) -> float:
    """The method's loss on fixed views of 32 held-out real images (no gradient, nothing enqueued). For
    MoCo the queue is first set to the current keys of 64 other real images, so that the value before
    and after training is measured against the same kind of negatives (the start-up queue is random)."""
    with torch.no_grad():
        if hasattr(m, "key"):
            m.criterion.memory_bank.bank = F.normalize(m.key(others), dim=1)
        return m.training_loss(held).item()


@pytest.mark.parametrize("name", NEW)
def test_loss_falls_on_real_images(name: str, small_data: Path, one_thread: None) -> None:
    ds = get_domain("imaging").make_dataset(small_data, read_manifest(small_data), None)
    x = torch.stack([ds[i] for i in range(160)])  # (160, 1, 28, 28) real chest X-rays
    augment = batched(get_domain("imaging").make_augment({}))
    torch.manual_seed(0)
    held = {"view1": augment(x[:32]), "view2": augment(x[:32]), "patient": torch.arange(32), "index": torch.arange(32)}
    others = augment(x[32:96])
    m = _method(name)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    before = _eval_loss(m, held, others)
    for step in range(16):
        i = 32 + (step % 4) * 32
        loss = m.training_loss({"view1": augment(x[i:i + 32]), "view2": augment(x[i:i + 32]),
                                "patient": torch.arange(32), "index": torch.arange(i, i + 32)})
        opt.zero_grad()
        loss.backward()
        opt.step()
        m.on_train_step_end(step, 16)
        assert math.isfinite(loss.item())
    after = _eval_loss(m, held, others)
    assert after < 0.98 * before, (name, before, after)  # seen: moco 4.07 -> 3.88, swav 3.24 -> 2.69


@pytest.mark.parametrize("name", NEW)
def test_cli_pretrain_loads_weights_only_and_finetunes(name: str, small_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "pre"
    assert main(["-q", "pretrain", "--data", str(small_data), "--out", str(run), "--method", name, "--max-steps", "3",
                 "--batch-size", "16", "--limit-cases", "64", "--accelerator", "cpu"]) == 0
    raw = torch.load(run / "checkpoint.pt", weights_only=True)
    assert raw["kind"] == "encoder" and raw["meta"]["method"] == name and raw["meta"]["global_step"] == 3
    assert main(["-q", "finetune", "--checkpoint", str(run / "checkpoint.pt"), "--data", str(small_data),
                 "--out", str(tmp_path / "ft"), "--label-fraction", "0.5", "--mode", "linear"]) == 0
    assert (tmp_path / "ft" / "model.pt").exists()


def test_a_domain_the_method_cannot_serve_is_one_error_line(small_data: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """The four methods here serve every domain; the supported_domains rule they rely on, shown once
    with a series-only method on images: one line, before any training."""
    argv = ["pretrain", "--data", str(small_data), "--out", str(tmp_path / "run"), "--method", "ts2vec"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "method 'ts2vec' works on ['ehr', 'signals'] data, not 'imaging'" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "run" / "checkpoint.pt").exists()


def _ingest_domain(domain: str, shared_data: Path, tmp: Path) -> Path:
    """A small real data set of a non-image domain, ingested as a user would."""
    out = tmp / "data"
    if domain == "ehr":  # 120 PhysioNet 2012 stays
        (tmp / "set-a").mkdir()
        for f in sorted((shared_data / "ehr/physionet2012/set-a").glob("*.txt"))[:120]:
            (tmp / "set-a" / f.name).write_bytes(f.read_bytes())
        argv = ["ehr", str(tmp / "set-a"), "--format", "physionet2012", "--outcomes",
                str(shared_data / "ehr/physionet2012/Outcomes-a.txt"), "--test-fraction", "0.25"]
    elif domain == "signals":  # MIT-BIH beats of two records
        argv = ["signals", str(shared_data / "signals/mitdb_ds1"), "--format", "wfdb", "--records", "101,106"]
    else:  # 3704 real card transactions (ULB)
        argv = ["transactions", str(shared_data / "transactions/ulb_creditcard_a.csv")]
    assert main(["-q", "ingest", *argv, "--out", str(out)]) == 0
    return out


@pytest.mark.slow  # 3 ingests + 12 short pretrain runs (~10-30 s each on 2 busy cores)
@pytest.mark.parametrize("domain", ["ehr", "signals", "transactions"])
def test_every_new_method_pretrains_on_each_series_and_table_domain(domain: str, shared_data: Path, tmp_path: Path) -> None:
    """supported_domains is None (any domain): each method pretrains from the CLI with the domain's
    default encoder and augmentations on real data, and its checkpoint loads with weights_only."""
    data = _ingest_domain(domain, shared_data, tmp_path)
    for name in NEW:
        run = tmp_path / name
        assert main(["-q", "pretrain", "--data", str(data), "--out", str(run), "--method", name, "--max-steps", "2",
                     "--batch-size", "16", "--limit-cases", "64", "--accelerator", "cpu"]) == 0
        raw = torch.load(run / "checkpoint.pt", weights_only=True)
        assert (raw["meta"]["domain"], raw["meta"]["method"], raw["meta"]["global_step"]) == (domain, name, 2)
