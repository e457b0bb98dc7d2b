"""SSL losses and methods: exact values, a hand-written reference, MICLe pairs and its negative mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lightly.loss import NTXentLoss
from torch.utils.data import DataLoader

from medssl.data.pairs import PairDataset, patient_codes
from medssl.encoders import create_encoder
from medssl.methods import create_method
from medssl.methods.micle import patient_masked_nt_xent


def _numpy_masked_nt_xent(z1: np.ndarray, z2: np.ndarray, patient: np.ndarray, t: float) -> np.ndarray:
    """Per-anchor loss written out with loops, straight from the MICLe/SimCLR definition."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    pid = np.concatenate([patient, patient])
    b, n = len(z1), 2 * len(z1)
    losses = []
    for i in range(n):
        pos = (i + b) % n
        denom = sum(
            math.exp(z[i] @ z[k] / t) for k in range(n) if k == pos or pid[k] != pid[i]
        )
        losses.append(-(z[i] @ z[pos] / t) + math.log(denom))
    return np.array(losses)


def test_nt_xent_exact_value_on_orthogonal_batch() -> None:
    # Two orthonormal cases, identical views, T=1: every anchor sees its positive (cos 1) and two
    # negatives (cos 0), so the loss is -log(e / (e + 2)) = log(1 + 2/e).
    z = torch.eye(2)
    expected = math.log(1 + 2 / math.e)
    assert patient_masked_nt_xent(z, z.clone(), torch.tensor([0, 1]), 1.0).item() == pytest.approx(expected, abs=1e-6)
    assert NTXentLoss(temperature=1.0)(z, z.clone()).item() == pytest.approx(expected, abs=1e-6)
    # Same patient: both negatives are dropped, only the positive is left, the loss is exactly 0.
    assert patient_masked_nt_xent(z, z.clone(), torch.tensor([7, 7]), 1.0).item() == pytest.approx(0.0, abs=1e-7)


def test_masked_nt_xent_equals_lightly_when_patients_are_distinct() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    for t in (0.1, 0.5):
        ours = patient_masked_nt_xent(z1, z2, torch.arange(6), t)
        torch.testing.assert_close(ours, NTXentLoss(temperature=t)(z1, z2), rtol=1e-5, atol=1e-6)


def test_masked_nt_xent_matches_hand_written_reference() -> None:
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    patient = torch.tensor([0, 0, 1, 2, 0])
    ours = patient_masked_nt_xent(z1, z2, patient, 0.2, reduction="none")
    ref = _numpy_masked_nt_xent(z1.numpy(), z2.numpy(), patient.numpy(), 0.2)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-5)


def test_negative_mask_drops_only_same_patient_pairs() -> None:
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    patient = torch.tensor([0, 0, 1, 2])  # rows 0 and 1 share a patient
    base = patient_masked_nt_xent(z1, z2, patient, 0.5, reduction="none")[0]  # anchor: view1 of row 0
    same = z2.clone()
    same[1] = torch.randn(3, generator=g)  # another image of the same patient: not a negative
    assert patient_masked_nt_xent(z1, same, patient, 0.5, reduction="none")[0].item() == pytest.approx(base.item(), abs=1e-7)
    other = z2.clone()
    other[2] = torch.randn(3, generator=g)  # a different patient: a negative, the loss must move
    assert abs(patient_masked_nt_xent(z1, other, patient, 0.5, reduction="none")[0].item() - base.item()) > 1e-4


class _Indexed:
    """A CaseDataset whose case i is a 1x4x4 image filled with the value i."""

    preprocessing: dict = {}

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.full((1, 4, 4), float(i))


PATIENTS = ["a", "b", "a", "c", "a", "b"]  # a: rows 0,2,4; b: rows 1,5; c: row 3 only


def test_micle_pairs_share_patient_and_use_different_images() -> None:
    ds = PairDataset(_Indexed(6), PATIENTS, lambda x: x.clone(), pairing="patient",
                     generator=torch.Generator().manual_seed(0))
    partners: dict[int, set[int]] = {i: set() for i in range(6)}
    for _ in range(40):
        for i in range(6):
            item = ds[i]
            j = int(item["view2"][0, 0, 0])
            assert int(item["view1"][0, 0, 0]) == i and int(item["index"]) == i
            assert PATIENTS[j] == PATIENTS[i]
            partners[i].add(j)
    assert partners == {0: {2, 4}, 1: {5}, 2: {0, 4}, 3: {3}, 4: {0, 2}, 5: {1}}
    assert patient_codes(PATIENTS).tolist() == [0, 1, 0, 2, 0, 1]


def test_micle_single_image_patient_gets_two_augmentations() -> None:
    noisy = lambda x: x + 0.1 * torch.randn_like(x)  # noqa: E731
    ds = PairDataset(_Indexed(6), PATIENTS, noisy, pairing="patient")
    item = ds[3]  # patient c has one image
    assert not torch.equal(item["view1"], item["view2"])
    assert torch.allclose(item["view1"], torch.full((1, 4, 4), 3.0), atol=1.0)
    assert torch.allclose(item["view2"], torch.full((1, 4, 4), 3.0), atol=1.0)


def test_augment_pairing_collates_to_the_batch_contract() -> None:
    ds = PairDataset(_Indexed(6), PATIENTS, lambda x: x.clone(), pairing="augment")
    batch = next(iter(DataLoader(ds, batch_size=6)))
    assert batch["view1"].shape == batch["view2"].shape == (6, 1, 4, 4)
    assert torch.equal(batch["view1"], batch["view2"])  # same case, identity "augmentation"
    assert batch["patient"].dtype == batch["index"].dtype == torch.int64
    assert batch["patient"].tolist() == [0, 1, 0, 2, 0, 1] and batch["index"].tolist() == list(range(6))
    with pytest.raises(ValueError, match="pairing"):
        PairDataset(_Indexed(6), PATIENTS, lambda x: x, pairing="random")


@pytest.mark.parametrize("name", ["byol", "dino"])
def test_momentum_teacher_follows_the_student(name: str) -> None:
    torch.manual_seed(0)
    method = create_method(name, create_encoder("small_cnn", in_channels=1, width=4))
    teacher = method.target_encoder if name == "byol" else method.teacher_encoder
    with torch.no_grad():
        for p in method.encoder.parameters():
            p.add_(1.0)  # pretend an optimizer step moved the student
    before = [p.clone() for p in teacher.parameters()]
    student = [p.clone() for p in method.encoder.parameters()]
    method.on_train_step_end(0, 10)  # cosine schedule at step 0: m = method.momentum
    m = method.momentum
    for t0, s, t1 in zip(before, student, teacher.parameters()):
        torch.testing.assert_close(t1, m * t0 + (1 - m) * s)
    assert not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("name", ["simclr", "micle", "byol", "dino"])
def test_loss_falls_after_a_few_steps(name: str) -> None:
    torch.manual_seed(0)
    method = create_method(name, create_encoder("small_cnn", in_channels=1, width=8))
    x = torch.rand(16, 1, 16, 16)
    opt = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(12):
        batch = {
            "view1": x + 0.05 * torch.randn_like(x),
            "view2": x + 0.05 * torch.randn_like(x),
            "patient": torch.arange(16),
            "index": torch.arange(16),
        }
        loss = method.training_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.on_train_step_end(step, 12)
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


class _Random:
    """A CaseDataset of fixed random 2x8 series (case i is row i of a seeded normal draw)."""

    preprocessing: dict = {}

    def __init__(self, n: int, seed: int = 0) -> None:
        self.x = torch.randn(n, 2, 8, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i].clone()


def test_nearest_partner_is_the_closest_other_case_of_the_same_patient() -> None:
    base = _Random(40)
    patients = [f"p{i % 3}" for i in range(37)] + ["solo", "q", "q"]
    ds = PairDataset(base, patients, lambda x: x.clone(), pairing="patient", partner="nearest", partner_k=2,
                     generator=torch.Generator().manual_seed(0))
    flat = base.x.reshape(40, -1).numpy().astype(np.float64)
    for i in range(40):
        same = [j for j in range(40) if patients[j] == patients[i] and j != i]
        dist = {j: float(np.linalg.norm(flat[i] - flat[j])) for j in same}
        expected = sorted(same, key=dist.get)[:2]  # brute force, nearest first
        assert ds.nearest_cases(i).tolist() == expected
        drawn = {int(torch.nonzero((base.x == ds[i]["view2"]).all(dim=(1, 2)))[0]) for _ in range(30)}
        assert drawn == (set(expected) if expected else {i})  # "solo" falls back to itself
    assert ds.nearest_cases(38).tolist() == [39]  # a two-case patient: the other one, only


def test_partner_prob_mixes_same_patient_partners_with_self_views() -> None:
    ds = PairDataset(_Indexed(6), PATIENTS, lambda x: x.clone(), pairing="patient", partner_prob=0.5,
                     generator=torch.Generator().manual_seed(0))
    partners = [int(ds[0]["view2"][0, 0, 0]) for _ in range(400)]
    share_self = partners.count(0) / len(partners)
    assert 0.4 < share_self < 0.6 and set(partners) == {0, 2, 4}
    never = PairDataset(_Indexed(6), PATIENTS, lambda x: x.clone(), pairing="patient", partner_prob=0.0)
    assert {int(never[i]["view2"][0, 0, 0]) for i in range(6) for _ in range(5)} == set(range(6)) and all(
        int(never[i]["view2"][0, 0, 0]) == i for i in range(6))
    for bad, message in (({"partner": "farthest"}, "partner must be one of .* got 'farthest'"),
                         ({"partner_k": 0}, "partner_k must be >= 1, got 0"),
                         ({"partner_prob": 1.5}, r"partner_prob must be in \[0, 1\], got 1.5")):
        with pytest.raises(ValueError, match=message):
            PairDataset(_Indexed(6), PATIENTS, lambda x: x, pairing="patient", **bad)


def test_micle_options_reach_the_pairs_and_the_loss() -> None:
    enc = create_encoder("small_cnn", in_channels=1)
    paper = create_method("micle", enc)
    assert paper.pair_options == {"partner": "random", "partner_k": 1, "partner_prob": 1.0}
    assert create_method("simclr", enc).pair_options == {}
    nn_micle = create_method("micle", enc, partner="nearest", partner_k=3, partner_prob=0.7, mask_patient_negatives=False)
    assert nn_micle.pair_options == {"partner": "nearest", "partner_k": 3, "partner_prob": 0.7}
    with pytest.raises(ValueError, match="partner"):
        create_method("micle", enc, partner="farthest")
    # unmasked: every other view is a negative, i.e. lightly's plain NT-Xent on the same projections
    g = torch.Generator().manual_seed(3)
    x1, x2 = torch.randn(6, 1, 16, 16, generator=g), torch.randn(6, 1, 16, 16, generator=g)
    batch = {"view1": x1, "view2": x2, "patient": torch.tensor([0, 0, 0, 1, 1, 2]), "index": torch.arange(6)}
    nn_micle.eval()
    with torch.no_grad():
        plain = NTXentLoss(temperature=0.1)(nn_micle.project(x1), nn_micle.project(x2))
        assert nn_micle.training_loss(batch).item() == pytest.approx(plain.item(), rel=1e-5)
        nn_micle.mask_patient_negatives = True
        assert abs(nn_micle.training_loss(batch).item() - plain.item()) > 1e-4
