"""EHR time series: readers (PhysioNet 2012, MIMIC-III, long CSV), the grid store, the dataset.

Names are re-exported lazily (see medssl.lazy)."""

from medssl.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "EHRDataset": "medssl.data.ehr.dataset",
        "fit_normalisation": "medssl.data.ehr.dataset",
        "make_ehr_dataset": "medssl.data.ehr.dataset",
        "GridStore": "medssl.data.ehr.grid",
        "build_grid": "medssl.data.ehr.grid",
        "EhrIngestOptions": "medssl.data.ehr.ingest",
        "ingest_ehr": "medssl.data.ehr.ingest",
        "PLAUSIBLE_RANGES": "medssl.data.ehr.long_csv",
        "clean_events": "medssl.data.ehr.long_csv",
        "read_long_csv": "medssl.data.ehr.long_csv",
        "read_mimic3": "medssl.data.ehr.mimic3",
        "read_physionet2012": "medssl.data.ehr.physionet2012",
    },
)
