"""Importing and plotting label-efficiency curves leaves a notebook's matplotlib backend alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
import matplotlib
matplotlib.use("svg")  # stands in for a notebook's inline backend
import pandas as pd
from medssl.eval.label_efficiency import plot_curves
summary = pd.DataFrame({"method": ["ssl_linear", "ssl_linear", "supervised", "supervised"],
                        "fraction": [0.01, 0.1, 0.01, 0.1], "auroc_mean": [0.8, 0.9, 0.6, 0.85],
                        "auroc_std": [0.02, 0.01, 0.05, 0.02]})
plot_curves(summary, sys.argv[1])
print(matplotlib.get_backend())
"""


def test_plot_curves_keeps_the_backend_and_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "curves.png"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "svg"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
