"""Anomaly scorers, the batch scoring job, local and Ray engines."""
