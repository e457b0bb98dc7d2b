"""Metrics with confidence intervals, label-fraction curves, reports and plots."""
