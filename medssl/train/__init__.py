"""Pretraining and fine-tuning loops (the one place that imports Lightning)."""
