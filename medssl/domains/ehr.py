"""EHR cases as the review page shows them: a stay's measured values over time, in their own units."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from medssl.domains.case_views import CaseContext, CaseViewData, TimelineView, not_installed, register_case_view

DEFAULT_SHOWN = 4  # variables shown at first: the stay's most often measured (the vitals)


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
    """The stay's measured points; the most often measured variables are shown first."""
    dataset = ctx.dataset
    if dataset is None:
        return not_installed(ctx.domain)
    obs = ehr_observations(dataset[ctx.index], dataset.preprocessing)
    counts = obs["variable"].value_counts()
    default = sorted(sorted(counts.index, key=lambda v: (-counts[v], v))[:DEFAULT_SHOWN])
    return TimelineView(obs, default, x_label="hours since admission",
                        caption="Points are the measured values; lines only join them.")
