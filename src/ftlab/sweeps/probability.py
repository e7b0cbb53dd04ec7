"""The recommendation as a probability: a paired bootstrap over the seeds every compared method ran.

Each resample draws the shared seeds with replacement and keeps a seed's results together across methods (the
pairing), then takes each method's mean test metric. Over the resamples, a method's probability of being within
the tolerance of the best is the share of resamples in which its mean is no further than the tolerance from the
best mean of that resample; its expected regret is the mean distance to that best (metric units, 0 for a method
that is always best). Why a bootstrap rather than a t or Bayesian model: it needs no normality assumption for the
maximum of several means, and it keeps the pairing. Its limit: with n seeds there are few distinct resamples (10
for 3 seeds), so with few seeds the probabilities are coarse and tend to be overconfident.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftlab.core.metric_names import lower_is_better
from ftlab.sweeps.configurations import Config

FRACTION_METRICS = ("acc", "f1", "precision", "recall", "auroc", "average_precision")
RESAMPLES = 10_000


def tolerance_amount(metric: str, points: float, best: float) -> tuple[float, str]:
    """``points`` in the metric's units, and how to say it: percentage points of a fraction (1 point of accuracy =
    0.01), else a percentage of the best value (loss, perplexity)."""
    if metric.rsplit("/", 1)[-1] in FRACTION_METRICS:
        return points / 100, f"{points:g} point(s)"
    return abs(best) * points / 100, f"{points:g}%"


@dataclass
class Odds:
    """One method's standing in the bootstrap."""

    within: float  # probability of being within the tolerance of the best
    regret: float  # expected distance to the best, metric units
    seeds: int  # the shared seeds it rests on


def bootstrap(configs: list[Config], metric: str, tolerance: float, seed: int = 0) -> dict[str, Odds] | None:
    """Each configuration's ``Odds`` (keyed by name), from the seeds all of them ran; None when they share fewer
    than two (a single run per method has no spread to resample). ``tolerance`` is in metric units."""
    shared = sorted(set.intersection(*(set(c.scores) for c in configs)), key=str) if configs else []
    if len(shared) < 2 or len(configs) < 2:
        return None
    sign = -1.0 if lower_is_better(metric) else 1.0
    scores = sign * np.array([[c.scores[s] for c in configs] for s in shared])  # seeds x methods, higher better
    draws = np.random.default_rng(seed).integers(0, len(shared), size=(RESAMPLES, len(shared)))
    means = scores[draws].mean(axis=1)  # resamples x methods
    gap = means.max(axis=1, keepdims=True) - means
    within, regret = (gap <= tolerance + 1e-12).mean(axis=0), gap.mean(axis=0)
    return {c.name: Odds(float(w), float(r), len(shared)) for c, w, r in zip(configs, within, regret)}
