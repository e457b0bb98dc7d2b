"""EHR time series: readers (PhysioNet 2012, MIMIC-III, long CSV), the grid store, the dataset."""

from medssl.data.ehr.dataset import EHRDataset, fit_normalisation, make_ehr_dataset
from medssl.data.ehr.grid import GridStore, build_grid
from medssl.data.ehr.long_csv import PLAUSIBLE_RANGES, clean_events, read_long_csv
from medssl.data.ehr.mimic3 import read_mimic3
from medssl.data.ehr.physionet2012 import read_physionet2012

__all__ = [
    "EHRDataset", "GridStore", "PLAUSIBLE_RANGES", "build_grid", "clean_events", "fit_normalisation",
    "make_ehr_dataset", "read_long_csv", "read_mimic3", "read_physionet2012",
]
