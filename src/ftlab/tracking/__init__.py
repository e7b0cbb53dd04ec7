"""Experiment tracking: a job's identity inside a sweep, and its loggers (W&B, CSV)."""
