"""Display names, units and normal adult ranges of the PhysioNet/CinC 2012 variables.

Units are the challenge's own (physionet.org/content/challenge-2012, "General descriptors" and
"Time series"). Normal ranges are common adult reference intervals (laboratory ranges differ a
little between hospitals; they shade the plot as a guide, they are no diagnosis). ``None``: no
meaningful normal range (FiO2, urine output per bin, weight, the ventilation flag; Mg, whose
documented unit, mmol/L, does not match the values in the files, about 2, which look like mg/dL).
Variables not in the table (MIMIC-III item names, a long CSV's own names) show their raw name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VariableInfo:
    """``name`` readable, ``unit`` (may be ""), ``normal`` ``(low, high)`` adult range or ``None``."""

    name: str
    unit: str = ""
    normal: tuple[float, float] | None = None


PHYSIONET_2012: dict[str, VariableInfo] = {
    "Albumin": VariableInfo("Albumin", "g/dL", (3.5, 5.0)),
    "ALP": VariableInfo("Alkaline phosphatase", "IU/L", (44, 147)),
    "ALT": VariableInfo("Alanine transaminase", "IU/L", (7, 56)),
    "AST": VariableInfo("Aspartate transaminase", "IU/L", (10, 40)),
    "Bilirubin": VariableInfo("Bilirubin", "mg/dL", (0.1, 1.2)),
    "BUN": VariableInfo("Blood urea nitrogen", "mg/dL", (7, 20)),
    "Cholesterol": VariableInfo("Cholesterol", "mg/dL", (125, 200)),
    "Creatinine": VariableInfo("Creatinine", "mg/dL", (0.6, 1.3)),
    "DiasABP": VariableInfo("Invasive diastolic BP", "mmHg", (60, 80)),
    "FiO2": VariableInfo("Fraction of inspired O2", "0-1", None),
    "GCS": VariableInfo("Glasgow Coma Score", "3-15", (15, 15)),
    "Glucose": VariableInfo("Glucose", "mg/dL", (70, 140)),
    "HCO3": VariableInfo("Bicarbonate", "mmol/L", (22, 29)),
    "HCT": VariableInfo("Haematocrit", "%", (36, 50)),
    "HR": VariableInfo("Heart rate", "bpm", (60, 100)),
    "K": VariableInfo("Potassium", "mEq/L", (3.5, 5.0)),
    "Lactate": VariableInfo("Lactate", "mmol/L", (0.5, 2.0)),
    "MAP": VariableInfo("Invasive mean arterial BP", "mmHg", (70, 105)),
    "MechVent": VariableInfo("Mechanical ventilation", "0/1", None),
    "Mg": VariableInfo("Magnesium", "mmol/L", None),
    "Na": VariableInfo("Sodium", "mEq/L", (135, 145)),
    "NIDiasABP": VariableInfo("Non-invasive diastolic BP", "mmHg", (60, 80)),
    "NIMAP": VariableInfo("Non-invasive mean arterial BP", "mmHg", (70, 105)),
    "NISysABP": VariableInfo("Non-invasive systolic BP", "mmHg", (90, 120)),
    "PaCO2": VariableInfo("Arterial CO2 pressure", "mmHg", (35, 45)),
    "PaO2": VariableInfo("Arterial O2 pressure", "mmHg", (75, 100)),
    "pH": VariableInfo("Arterial pH", "", (7.35, 7.45)),
    "Platelets": VariableInfo("Platelets", "cells/nL", (150, 400)),
    "RespRate": VariableInfo("Respiration rate", "breaths/min", (12, 20)),
    "SaO2": VariableInfo("O2 saturation", "%", (95, 100)),
    "SysABP": VariableInfo("Invasive systolic BP", "mmHg", (90, 120)),
    "Temp": VariableInfo("Temperature", "°C", (36.1, 37.2)),
    "TroponinI": VariableInfo("Troponin I", "µg/L", (0, 0.04)),
    "TroponinT": VariableInfo("Troponin T", "µg/L", (0, 0.01)),
    "Urine": VariableInfo("Urine output", "mL", None),
    "WBC": VariableInfo("White blood cells", "cells/nL", (4.5, 11.0)),
    "Weight": VariableInfo("Weight", "kg", None),
}

STATICS: dict[str, VariableInfo] = {
    "Age": VariableInfo("Age", "years"), "Gender": VariableInfo("Gender"), "Height": VariableInfo("Height", "cm"),
    "Weight": VariableInfo("Admission weight", "kg"), "ICUType": VariableInfo("ICU type"),
}
ICU_TYPES = {1: "Coronary Care Unit", 2: "Cardiac Surgery Recovery Unit", 3: "Medical ICU", 4: "Surgical ICU"}
GENDERS = {0: "female", 1: "male"}


def variable_info(name: str) -> VariableInfo:
    """The table's entry for ``name``, or the raw name with no unit and no range."""
    return PHYSIONET_2012.get(name, VariableInfo(name))
