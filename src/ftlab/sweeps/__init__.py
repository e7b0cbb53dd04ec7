"""Sweeps: a job's identity inside a sweep (W&B group, name, run id) and the sweep report."""
