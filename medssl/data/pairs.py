"""Pairs of views for self-supervised pretraining, drawn by augmentation or by patient (MICLe).

``PairDataset[i]`` is one sample of the ``SSLMethod`` batch contract (default collation stacks it)::

    {"view1": aug(x_i), "view2": aug(x_j), "patient": int64 patient index, "index": int64 i}

- ``pairing="augment"`` (SimCLR, BYOL, DINO): ``j = i``, two random augmentations of one case.
- ``pairing="patient"`` (MICLe, Azizi et al. 2021): ``j`` is a *different* case of the same patient,
  drawn uniformly at random; a patient with a single case falls back to ``j = i`` (the paper's rule).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medssl.data.domains import CaseDataset

PAIRINGS = ("augment", "patient")


def patient_codes(patient_ids: Sequence[str] | pd.Series) -> np.ndarray:
    """Integer patient index (0..P-1, in order of first appearance) per row: ``(N,)`` int64."""
    codes, _ = pd.factorize(pd.Series(list(patient_ids), dtype=object))
    return codes.astype(np.int64)


class PairDataset(Dataset):
    """Two views per case of ``base`` (see the module docstring).

    ``patients``: one patient id (str or int) per row of ``base``. ``augment``: per-sample random
    view ``Tensor -> Tensor``. ``generator``: optional ``torch.Generator`` for the partner draw
    (default: torch's global RNG, which Lightning seeds per worker).
    """

    def __init__(
        self,
        base: CaseDataset,
        patients: Sequence[str] | Sequence[int] | pd.Series,
        augment: Callable[[torch.Tensor], torch.Tensor],
        pairing: str = "augment",
        generator: torch.Generator | None = None,
    ) -> None:
        if pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
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
        others = cases[cases != index]
        pick = torch.randint(len(others), (1,), generator=self.generator).item()
        return int(others[pick])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        j = self.partner(index)
        x_i = self.base[index]
        x_j = x_i if j == index else self.base[j]
        return {
            "view1": self.augment(x_i),
            "view2": self.augment(x_j),
            "patient": self.patient[index].clone(),
            "index": torch.tensor(index, dtype=torch.int64),
        }
