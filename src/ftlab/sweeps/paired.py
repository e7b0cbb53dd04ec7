"""Two configurations compared on the seeds both ran: the paired t interval (95%) on per-seed differences of the
test metric. Jobs with one seed share data order and head initialisation, so pairing removes that part of the
seed-to-seed spread."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from ftlab.core.metric_names import lower_is_better
from ftlab.sweeps.configurations import Config
from ftlab.sweeps.tables import fmt


@dataclass
class Paired:
    """``a`` minus ``b`` on their shared seeds: mean difference, 95% paired t interval, seeds needed."""

    a: Config
    b: Config
    n: int
    mean: float
    low: float
    high: float
    seeds_needed: int | None  # rough: seeds for the interval to exclude 0 at the observed spread (None: unknowable)

    @property
    def distinguishable(self) -> bool:
        return self.n >= 2 and (self.low > 0 or self.high < 0)


def paired(a: Config, b: Config) -> Paired | None:
    """The paired comparison of two configurations on the seeds both ran; None when they share none."""
    # Here, not at the top: scipy.stats takes a noticeable part of a second, and every job imports the report's
    # Hydra callback at start-up although only the report compares.
    from scipy.stats import t

    seeds = sorted(set(a.scores) & set(b.scores), key=str)
    if not seeds:
        return None
    diffs = [a.scores[s] - b.scores[s] for s in seeds]
    n, mean = len(diffs), statistics.fmean(diffs)
    if n < 2:
        return Paired(a, b, n, mean, -math.inf, math.inf, None)
    sd = statistics.stdev(diffs)
    half = t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    needed = None
    if mean != 0:
        # n such that t(n-1) * sd / sqrt(n) < |mean|, with t approximated by its value at the current n.
        needed = max(n + 1, math.ceil((t.ppf(0.975, n - 1) * sd / abs(mean)) ** 2)) if half >= abs(mean) else n
    return Paired(a, b, n, mean, mean - half, mean + half, needed)


def comparison(p: Paired, metric: str) -> str:
    """One sentence on ``a`` vs ``b`` that claims a winner only when the interval excludes zero."""
    if p.n < 2:
        return (f"{p.a.label} vs {p.b.label}: {p.n} shared seed, no interval; run more seeds (`seed=1,2,3`) to tell "
                "them apart.")
    interval = f"mean difference {fmt(p.mean)}, 95% paired t interval [{fmt(p.low)}, {fmt(p.high)}], n={p.n}"
    if p.distinguishable:
        better = p.a if (p.mean > 0) != lower_is_better(metric) else p.b
        return f"{better.label} is better on {metric} than {(p.b if better is p.a else p.a).label} ({interval})."
    need = f"about {p.seeds_needed} seeds would resolve a difference this size" if p.seeds_needed else (
        "the observed difference is zero")
    return f"No difference detected at {p.n} seeds between {p.a.label} and {p.b.label} ({interval}); {need}."
