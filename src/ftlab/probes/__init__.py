"""Measurements beside training: what fine-tuning forgets (retention)."""
