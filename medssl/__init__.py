"""medssl: self-supervised learning for medical and sensor data.

The loop: ingest -> pretrain (no labels) -> fine-tune (few labels) -> score -> review -> labels.
"""

__version__ = "0.1.0"
