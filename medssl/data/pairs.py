"""Pairs of views for self-supervised pretraining, drawn by augmentation or by patient (MICLe).

``PairDataset[i]`` is one sample of the ``SSLMethod`` batch contract (default collation stacks it)::

    {"view1": aug(x_i), "view2": aug(x_j), "patient": int64 patient index, "index": int64 i}

With ``augment=None`` (what ``medssl pretrain`` uses) the views are the cases themselves, ``x_i``
and ``x_j``: the training loop augments whole batches on the training device
(``medssl.transforms.batched``; ``PretrainModule(augment=...)``), which is many times faster than
one case at a time. A per-case ``augment`` callable still works (views drawn in the loader).

- ``pairing="augment"`` (SimCLR, BYOL, DINO): ``j = i``, two random augmentations of one case.
- ``pairing="patient"`` (MICLe, Azizi et al. 2021): ``j`` is a *different* case of the same patient;
  a patient with a single case falls back to ``j = i`` (the paper's rule). Which other case:

  - ``partner="random"`` (the paper): uniformly at random among the patient's other cases;
  - ``partner="nearest"``: uniformly among the ``partner_k`` other cases of the same patient that
    are closest to case ``i`` in input space (Euclidean distance between the un-augmented,
    flattened ``base[i]`` tensors; computed once, per patient, when the dataset is built). This is
    NNCLR's nearest-neighbour positive restricted to one patient: when a patient's cases are of
    different kinds (e.g. a record's few ectopic heart beats among many normal ones), a random
    partner would pull the rare kind onto the common one, the nearest partner keeps it apart.

  ``partner_prob`` (default 1): the probability of using the same-patient partner at all; otherwise
  ``j = i`` (two augmentations of one case, as for a single-case patient).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medssl.data.domains import CaseDataset

PAIRINGS = ("augment", "patient")
PARTNERS = ("random", "nearest")


def patient_codes(patient_ids: Sequence[str] | pd.Series) -> np.ndarray:
    """Integer patient index (0..P-1, in order of first appearance) per row: ``(N,)`` int64."""
    codes, _ = pd.factorize(pd.Series(list(patient_ids), dtype=object))
    return codes.astype(np.int64)


class PairDataset(Dataset):
    """Two views per case of ``base`` (see the module docstring).

    ``patients``: one patient id (str or int) per row of ``base``. ``augment``: per-sample random
    view ``Tensor -> Tensor``, or ``None`` for the cases as they are (augmented later, per batch). ``generator``: optional ``torch.Generator`` for the partner draw
    (default: torch's global RNG, which Lightning seeds per worker). ``partner``, ``partner_k``,
    ``partner_prob``: how ``pairing="patient"`` picks the partner case (module docstring).
    """

    def __init__(
        self,
        base: CaseDataset,
        patients: Sequence[str] | Sequence[int] | pd.Series,
        augment: Callable[[torch.Tensor], torch.Tensor] | None,
        pairing: str = "augment",
        generator: torch.Generator | None = None,
        partner: str = "random",
        partner_k: int = 1,
        partner_prob: float = 1.0,
    ) -> None:
        if pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
        if partner not in PARTNERS:
            raise ValueError(f"partner must be one of {PARTNERS}, got {partner!r}")
        if partner_k < 1:
            raise ValueError(f"partner_k must be >= 1, got {partner_k}")
        if not 0.0 <= partner_prob <= 1.0:
            raise ValueError(f"partner_prob must be in [0, 1], got {partner_prob}")
        if len(patients) != len(base):
            raise ValueError(f"{len(patients)} patient ids for a dataset of {len(base)} cases")
        self.base = base
        self.augment = augment
        self.pairing = pairing
        self.generator = generator
        self.patient = torch.from_numpy(patient_codes(patients))  # (N,) int64
        order = np.argsort(self.patient.numpy(), kind="stable")
        bounds = np.flatnonzero(np.diff(self.patient.numpy()[order])) + 1
        groups = np.split(order, bounds)  # row indices of each patient, patient codes ascending
        self._cases_of: list[torch.Tensor] = [torch.from_numpy(g.astype(np.int64)) for g in groups]
        self.partner_mode, self.partner_k, self.partner_prob = partner, partner_k, partner_prob
        self._neighbours: torch.Tensor | None = None  # (N, k) rows, -1 = none (partner="nearest")
        if pairing == "patient" and partner == "nearest":
            self._neighbours = self._nearest_cases(partner_k)

    def _nearest_cases(self, k: int, chunk: int = 1024) -> torch.Tensor:
        """``(N, k)`` int64: per row, its ``k`` nearest *other* cases of the same patient in input space.

        Fewer than ``k`` other cases: the row is padded with ``-1``. One patient's inputs are held in
        memory at a time; distances are computed ``chunk`` rows at a time.
        """
        out = torch.full((len(self.base), k), -1, dtype=torch.int64)
        for cases in self._cases_of:
            if len(cases) < 2:
                continue
            x = torch.stack([self.base[int(i)].reshape(-1).float() for i in cases])  # (K, D)
            kk = min(k, len(cases) - 1)
            for start in range(0, len(cases), chunk):
                d = torch.cdist(x[start : start + chunk], x)  # (c, K)
                own = torch.arange(start, start + d.shape[0])
                d[torch.arange(d.shape[0]), own] = float("inf")  # never the case itself
                nearest = d.topk(kk, dim=1, largest=False).indices  # (c, kk), ascending distance
                out[cases[start : start + d.shape[0]], :kk] = cases[nearest]
        return out

    def nearest_cases(self, index: int) -> torch.Tensor:
        """``(<= partner_k,)`` rows ``partner="nearest"`` draws from for ``index``, nearest first."""
        if self._neighbours is None:
            raise ValueError('nearest_cases needs pairing="patient", partner="nearest"')
        row = self._neighbours[index]
        return row[row >= 0]

    def __len__(self) -> int:
        return len(self.base)

    def cases_of_patient(self, patient: int) -> torch.Tensor:
        """Row indices ``(K,)`` of every case of patient index ``patient``."""
        return self._cases_of[patient]

    def partner(self, index: int) -> int:
        """Row of ``view2``: ``index`` itself, or another case of the same patient (``"patient"``)."""
        if self.pairing == "augment":
            return index
        cases = self._cases_of[int(self.patient[index])]
        if len(cases) < 2:
            return index  # single-image patient: two augmentations of the same image
        if self.partner_prob < 1.0 and torch.rand((), generator=self.generator).item() >= self.partner_prob:
            return index  # augmented self-view this time
        others = self.nearest_cases(index) if self._neighbours is not None else cases[cases != index]
        pick = torch.randint(len(others), (1,), generator=self.generator).item()
        return int(others[pick])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        j = self.partner(index)
        x_i = self.base[index]
        x_j = x_i if j == index else self.base[j]
        if self.augment is not None:
            x_i, x_j = self.augment(x_i), self.augment(x_j)
        return {
            "view1": x_i,
            "view2": x_j,
            "patient": self.patient[index].clone(),
            "index": torch.tensor(index, dtype=torch.int64),
        }
