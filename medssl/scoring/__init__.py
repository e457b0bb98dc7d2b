"""The batch scoring job, chunks, local and Ray engines, explanations (scorers: ``medssl.anomaly``)."""
