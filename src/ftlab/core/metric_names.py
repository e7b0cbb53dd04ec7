"""What a metric's name says about it: ``val/loss`` and ``val/ppl`` are better lower, every other metric (accuracy,
F1, ...) higher. The one rule behind checkpoint selection, early stopping, the search's direction and the report's
rankings; the config derives ``monitor_mode`` from ``monitor`` with it (``${ftlab.monitor_mode:${monitor}}``)."""

from __future__ import annotations

from omegaconf import OmegaConf

LOWER_IS_BETTER = ("/loss", "/ppl")


def lower_is_better(metric: str) -> bool:
    return str(metric).endswith(LOWER_IS_BETTER)


def monitor_mode(metric: str) -> str:
    """Lightning's ``mode`` for a monitored metric: ``min`` or ``max``."""
    return "min" if lower_is_better(metric) else "max"


def register_resolvers() -> None:
    """Make ``${ftlab.monitor_mode:...}`` available to the configs (idempotent)."""
    if not OmegaConf.has_resolver("ftlab.monitor_mode"):
        OmegaConf.register_new_resolver("ftlab.monitor_mode", monitor_mode)
