"""Physiological and sensor signals: WFDB beats, UEA .ts series, CSV streams -> fixed windows."""

from medssl.data.signals.aami import AAMI_CLASSES, AAMI_MAP, aami_class
from medssl.data.signals.csv_stream import read_stream_csv
from medssl.data.signals.dataset import SignalDataset, load_windows, make_signal_dataset, save_windows
from medssl.data.signals.ts_format import read_ts
from medssl.data.signals.wfdb_beats import BeatWindow, read_beats

__all__ = [
    "AAMI_CLASSES", "AAMI_MAP", "BeatWindow", "SignalDataset", "aami_class", "load_windows",
    "make_signal_dataset", "read_beats", "read_stream_csv", "read_ts", "save_windows",
]
