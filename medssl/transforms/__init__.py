"""Views and augmentations per domain (image, series, tabular)."""
