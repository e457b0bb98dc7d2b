"""Per-domain recipes, chosen by measurement: which features an anomaly scorer and a few-label
classifier read, and how they are fitted (``medssl.domains.recipe``).

``anomaly_recipe(name)`` / ``few_label_recipe(name)`` look one up ("did you mean" for typos);
``default_recipes(domain)`` gives a domain's defaults; ``"auto"`` always means the default.
"""

from __future__ import annotations

from medssl.domains import ehr, generic, signals, transactions  # noqa: F401  (registers the recipes)
from medssl.domains.case_views import CaseContext, case_view, register_case_view
from medssl.domains.recipe import (
    ANOMALY_RECIPES,
    FEW_LABEL_RECIPES,
    AnomalyRecipe,
    FewLabelRecipe,
    linear_head,
)

DEFAULTS: dict[str, tuple[str, str]] = {  # domain -> (anomaly recipe, few-label recipe)
    "transactions": ("raw_pseudo_label", "raw_score_logreg"),
    "signals": ("embedding_knn", "rr_hybrid"),
    "ehr": ("embedding_knn", "ehr_summary_hybrid"),
    "imaging": ("embedding_knn", "views_or_probe"),  # benchmarks/pays_images.py: val and perturbed val, seeds 0-2
}
FALLBACK = ("embedding_knn", "embedding_head")
LABEL_UNITS: dict[str, str] = {"signals": "case"}  # domain -> label unit when patients hold many cases


def default_label_unit(domain: str) -> str:
    """How a domain's labelled subsets are drawn by default: ``"case"`` (ECG beats, sensor windows:
    a few cases of every patient) or ``"patient"`` (whole patients: images, ICU stays)."""
    return LABEL_UNITS.get(domain, "patient")



def default_recipes(domain: str) -> tuple[str, str]:
    """``(anomaly recipe, few-label recipe)`` names a domain uses unless told otherwise."""
    return DEFAULTS.get(domain, FALLBACK)


def anomaly_recipe(name: str, domain: str) -> AnomalyRecipe:
    """The anomaly recipe ``name`` (``"auto"``: the domain's default)."""
    return ANOMALY_RECIPES.create(default_recipes(domain)[0] if name in ("auto", None) else name)


def few_label_recipe(name: str, domain: str) -> FewLabelRecipe:
    """The few-label recipe ``name`` (``"auto"``: the domain's default)."""
    return FEW_LABEL_RECIPES.create(default_recipes(domain)[1] if name in ("auto", None) else name)


def list_recipes() -> dict[str, list[str]]:
    """Registered recipe names by kind."""
    return {"anomaly": ANOMALY_RECIPES.names(), "few_label": FEW_LABEL_RECIPES.names()}


__all__ = ["AnomalyRecipe", "FewLabelRecipe", "anomaly_recipe", "few_label_recipe", "default_recipes", "default_label_unit",
           "list_recipes", "linear_head", "CaseContext", "case_view", "register_case_view"]
