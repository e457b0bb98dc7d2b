"""Physiological and sensor signals: WFDB beats, UEA .ts series, CSV streams -> fixed windows.

Names are re-exported lazily (see medssl.lazy)."""

from medssl.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "AAMI_CLASSES": "medssl.data.signals.aami",
        "AAMI_MAP": "medssl.data.signals.aami",
        "aami_class": "medssl.data.signals.aami",
        "read_stream_csv": "medssl.data.signals.csv_stream",
        "SignalDataset": "medssl.data.signals.dataset",
        "load_windows": "medssl.data.signals.dataset",
        "make_signal_dataset": "medssl.data.signals.dataset",
        "save_windows": "medssl.data.signals.dataset",
        "SignalIngestOptions": "medssl.data.signals.ingest",
        "ingest_signals": "medssl.data.signals.ingest",
        "read_ts": "medssl.data.signals.ts_format",
        "BeatWindow": "medssl.data.signals.wfdb_beats",
        "read_beats": "medssl.data.signals.wfdb_beats",
    },
)
