"""How a case is shown: each domain registers a provider that turns its manifest row into display data.

A provider ``(CaseContext) -> view`` reads the case through its domain's own readers and datasets
(``medssl.data``), so the review page sees what ingest accepted and what the model scored, and
returns one of a few plain view kinds that a front end can draw without knowing the domain:

- ``ImageView``: grey frames ``(F, H, W)`` in the source's units, before intensity scaling;
- ``TimelineView``: observed points ``time_h, variable, value`` of a stay;
- ``SeriesView``: one column per channel over samples, optionally with a marked sample;
- ``TablesView``: titled tables (or a caption where there is none);
- ``Notice``: why the case cannot be shown;
- ``EcgView`` (``medssl.domains.ecg_view``): an ECG beat on a rhythm strip, on ECG paper;
- ``VitalsView`` (``medssl.domains.vitals_view``): an ICU stay as small multiples with units.

``register_case_view(domain)`` registers a provider (the domain modules ``imaging``, ``ehr``,
``signals``, ``transactions`` of this package do); ``case_view(ctx)`` builds the view, with a
generic one (the dataset item as a series) for domains without a provider of their own.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from medssl.domains.ecg_view import EcgView
from medssl.domains.vitals_view import VitalsView
from medssl.errors import UnknownNameError

_BUILTIN = ("medssl.domains.imaging", "medssl.domains.ehr", "medssl.domains.signals",
            "medssl.domains.transactions")


@dataclass(frozen=True)
class ImageView:
    """``frames`` float32 ``(F, H, W)``: the image as the imaging dataset decodes it (grey, in the
    source's units, at its stored resolution); ``frame`` is the case's own frame; ``modality`` the
    DICOM Modality ("" for plain images); ``presets`` window/level presets ``name -> (center,
    width)`` (``medssl.domains.image_view``: ``auto`` for every image, lung/mediastinum/bone for CT)."""

    frames: np.ndarray
    frame: int = 0
    modality: str = ""
    presets: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class TimelineView:
    """Observed points (columns ``time_h, variable, value``); ``default`` the variables shown first."""

    observations: pd.DataFrame
    default: list[str]
    x_label: str
    caption: str | None = None


@dataclass(frozen=True)
class SeriesView:
    """``frame``: index = sample (or seconds), one column per channel; ``marker`` a position on
    that index to mark (or ``None``)."""

    frame: pd.DataFrame
    x_label: str
    marker: float | None = None
    marker_label: str = ""
    caption: str | None = None


@dataclass(frozen=True)
class TableSection:
    """A titled table, or a caption in its place when ``table`` is ``None``."""

    title: str
    table: pd.DataFrame | None = None
    caption: str | None = None


@dataclass(frozen=True)
class TablesView:
    sections: list[TableSection] = field(default_factory=list)


@dataclass(frozen=True)
class Notice:
    """The case cannot be shown; ``message`` says why."""

    message: str


CaseViewData = ImageView | TimelineView | SeriesView | TablesView | Notice | EcgView | VitalsView


def domain_dataset(data_dir: str | Path, manifest: pd.DataFrame) -> Any | None:
    """The domain's dataset over ``manifest`` (one domain), or ``None`` if that domain's reader
    has not been installed (the page then says so)."""
    from medssl.data import get_domain

    try:
        domain = get_domain(str(manifest["domain"].iloc[0]))
    except UnknownNameError:
        return None
    return domain.make_dataset(Path(data_dir), manifest.reset_index(drop=True), None)


@dataclass
class CaseContext:
    """One case and where it lives: ``rows`` are the manifest rows of the case's domain (index
    0..n-1), ``index`` the case's row among them. ``dataset`` builds the domain's dataset over
    ``rows`` (a front end may pass a cached one); by default ``domain_dataset``.

    ``show_reference``: whether the viewer may see the reference answer (labels, the annotations
    that are the label, the split). ``False`` (a reviewer, the default): every provider leaves them
    out, so a clinician's decision is never anchored on the ground truth; data scientists pass True."""

    data_dir: Path
    rows: pd.DataFrame
    index: int
    make_dataset: Callable[[], Any | None] | None = None
    show_reference: bool = False

    @classmethod
    def of(cls, data_dir: str | Path, manifest: pd.DataFrame, case_id: str,
           make_dataset: Callable[[], Any | None] | None = None, show_reference: bool = False) -> CaseContext:
        """The context of ``case_id`` in ``manifest`` (any domains; ``KeyError`` when absent)."""
        match = manifest.index[manifest["case_id"] == case_id]
        if len(match) == 0:
            raise KeyError(case_id)
        domain = manifest.loc[match[0], "domain"]
        rows = manifest[manifest["domain"] == domain].reset_index(drop=True)
        return cls(Path(data_dir), rows, int(np.flatnonzero(rows["case_id"] == case_id)[0]), make_dataset,
                   show_reference)

    @cached_property
    def row(self) -> dict[str, Any]:
        return self.rows.iloc[self.index].to_dict()

    @property
    def domain(self) -> str:
        return str(self.row["domain"])

    @cached_property
    def dataset(self) -> Any | None:
        return self.make_dataset() if self.make_dataset is not None else domain_dataset(self.data_dir, self.rows)


CASE_VIEWS: dict[str, Callable[[CaseContext], CaseViewData]] = {}


def register_case_view(domain: str) -> Callable[[Callable[[CaseContext], CaseViewData]], Callable[[CaseContext], CaseViewData]]:
    """Decorator: ``fn(ctx) -> view`` shows the cases of ``domain`` (one provider per domain)."""

    def wrap(fn: Callable[[CaseContext], CaseViewData]) -> Callable[[CaseContext], CaseViewData]:
        if CASE_VIEWS.get(domain, fn) is not fn:
            raise ValueError(f"case view of domain {domain!r} is registered twice")
        CASE_VIEWS[domain] = fn
        return fn

    return wrap


def case_view_provider(domain: str) -> Callable[[CaseContext], CaseViewData]:
    """The provider of ``domain``, or the generic one (the dataset item as a series)."""
    for name in _BUILTIN:
        importlib.import_module(name)
    return CASE_VIEWS.get(domain, generic_case_view)


def case_view(ctx: CaseContext) -> CaseViewData:
    """What the case page shows for ``ctx``'s case (``DataError``/``ReaderError`` if unreadable)."""
    return case_view_provider(ctx.domain)(ctx)


def not_installed(domain: str) -> Notice:
    return Notice(f"The {domain} reader is not installed in this medssl, so this case cannot be shown yet.")


def series_frame(x: torch.Tensor, channel_names: list[str] | None = None) -> pd.DataFrame:
    """A ``(C, T)`` case tensor as a DataFrame indexed by time step with one column per channel."""
    arr = x.detach().cpu().numpy()
    if arr.ndim == 1:
        arr = arr[None]
    arr = arr.reshape(arr.shape[0], -1)
    names = channel_names if channel_names and len(channel_names) == arr.shape[0] else [f"ch{i}" for i in range(arr.shape[0])]
    return pd.DataFrame(arr.T, columns=names)


def generic_case_view(ctx: CaseContext) -> CaseViewData:
    """Any domain: the dataset item (what the encoder reads) as one line per channel."""
    if ctx.dataset is None:
        return not_installed(ctx.domain)
    return SeriesView(series_frame(ctx.dataset[ctx.index]), x_label="sample")


def deviating_features(values: np.ndarray, reference: np.ndarray, names: list[str], top: int = 8) -> pd.DataFrame:
    """The ``top`` features of one case furthest from the reference cases, in standard deviations.

    ``values`` ``(F,)``, ``reference`` ``(N, F)``. Columns: feature, value, reference_mean, z
    (sorted by |z|, largest first). Constant reference features get z = 0.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    z = np.divide(values - mean, std, out=np.zeros_like(values), where=std > 0)
    order = np.argsort(-np.abs(z), kind="stable")[:top]
    return pd.DataFrame({
        "feature": [names[i] if i < len(names) else f"f{i}" for i in order],
        "value": values[order], "reference_mean": mean[order], "z": z[order],
    })
