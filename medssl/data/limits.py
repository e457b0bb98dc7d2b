"""Ranges of the numeric ingest options, shared by the option checks and the CLI's flag parsers.

No heavy imports here: ``medssl ingest --help`` reads these before numpy or pandas load.
"""

from __future__ import annotations

MAX_SEED = 2**32 - 2  # numpy/scikit-learn seeds are < 2**32, and the val split uses seed + 1
MAX_HOURS = 24 * 365.0  # --hours: one year of a stay at most
MAX_BINS = 10_000  # --hours / --step-hours: time bins of the EHR grid
MAX_GRID_BYTES = 8 * 2**30  # memory the EHR grid may take while it is built
MAX_VARIABLES = 10_000  # --max-variables
MAX_WINDOW_S = 60.0  # --before-s, --after-s: seconds around a beat
MAX_SAMPLES = 100_000  # --length, --window, --stride: samples per window (277 s at 360 Hz)
MAX_WINDOW_BYTES = 8 * 2**30  # all signal windows together (float32)
MAX_WORKERS = 1024  # --workers
MAX_HISTORY = 256  # --history: previous transactions kept per case
MAX_COUNT = 10**9  # --limit, --max-records, --leads, --header-row, --max-categories
