"""The decision a sweep supports: configurations (jobs that differ only in ``seed``), the Pareto front of quality
against each cost, paired comparisons on shared seeds, and a recommendation that claims no more than they show.

Paired comparisons use the paired t interval (95%) on per-seed differences: two strategies run with the same seeds
share data order and head initialisation, so pairing removes that part of the seed-to-seed spread.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from ftlab.core.metric_names import lower_is_better
from ftlab.sweeps.sweep_dir import by_configuration

COSTS = {"train_time_s": "train time (s)", "peak_memory_mb": "peak memory (MiB)", "trainable_pct": "trainable (%)"}
FRACTION_METRICS = ("acc", "f1", "precision", "recall")


def tolerance_amount(metric: str, points: float, best: float) -> tuple[float, str]:
    """``points`` in the metric's units, and how to say it: percentage points of a fraction (1 point of accuracy =
    0.01), else a percentage of the best value (loss, perplexity)."""
    if metric.rsplit("/", 1)[-1] in FRACTION_METRICS:
        return points / 100, f"{points:g} point(s)"
    return abs(best) * points / 100, f"{points:g}%"


@dataclass
class Config:
    """One configuration: the completed jobs that differ only in ``seed``."""

    name: str  # the swept overrides other than seed, e.g. strategy=partial,lr=0.001
    label: str  # the strategy label, e.g. lora(r=8)
    scores: dict[Any, float]  # seed (or job number without a seed sweep) -> metric
    costs: dict[str, float] = field(default_factory=dict)  # mean of each cost over the seeds

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores.values())

    @property
    def std(self) -> float:
        return statistics.stdev(self.scores.values()) if len(self.scores) > 1 else 0.0


def configurations(rows: list[dict[str, Any]], keys: list[str], metric: str) -> list[Config]:
    """Completed jobs with ``metric``, grouped by their swept values other than ``seed``."""
    groups = by_configuration(rows, keys, lambda row: row["status"] == "completed" and isinstance(
        row.get(metric), (int, float)) and math.isfinite(row[metric]))
    out = []
    for name, members in groups.items():
        scores = {m.get("seed", m["job"]) if "seed" in keys else m["job"]: m[metric] for m in members}
        costs = {c: statistics.fmean(m[c] for m in members) for c in COSTS
                 if all(isinstance(m.get(c), (int, float)) for m in members)}
        out.append(Config(name, str(members[0].get("strategy_name") or name), scores, costs))
    return out


def ranked(configs: list[Config], metric: str) -> list[Config]:
    """Best first: highest mean, or lowest for a loss or perplexity."""
    return sorted(configs, key=lambda c: c.mean, reverse=not lower_is_better(metric))


def pareto_front(configs: list[Config], cost: str, metric: str) -> list[Config]:
    """Configurations that no other beats on both quality and ``cost`` (at least as good on both, better on one)."""
    sign = -1 if lower_is_better(metric) else 1
    have = [c for c in configs if cost in c.costs]

    def dominates(a: Config, b: Config) -> bool:
        better_or_equal = sign * a.mean >= sign * b.mean and a.costs[cost] <= b.costs[cost]
        return better_or_equal and (sign * a.mean > sign * b.mean or a.costs[cost] < b.costs[cost])

    return sorted((c for c in have if not any(dominates(o, c) for o in have if o is not c)),
                  key=lambda c: c.costs[cost])


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


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def describe(config: Config, metric: str) -> str:
    spread = f" ± {_fmt(config.std)}" if len(config.scores) > 1 else ""
    return (f"**{config.label}** (`{config.name}`): {metric} {_fmt(config.mean)}{spread} "
            f"over {len(config.scores)} seed(s)")


def comparison(p: Paired, metric: str) -> str:
    """One sentence on ``a`` vs ``b`` that claims a winner only when the interval excludes zero."""
    if p.n < 2:
        return (f"{p.a.label} vs {p.b.label}: {p.n} shared seed, no interval; run more seeds (`seed=1,2,3`) to tell "
                "them apart.")
    interval = f"mean difference {_fmt(p.mean)}, 95% paired t interval [{_fmt(p.low)}, {_fmt(p.high)}], n={p.n}"
    if p.distinguishable:
        better = p.a if (p.mean > 0) != lower_is_better(metric) else p.b
        return f"{better.label} is better on {metric} than {(p.b if better is p.a else p.a).label} ({interval})."
    need = f"about {p.seeds_needed} seeds would resolve a difference this size" if p.seeds_needed else (
        "the observed difference is zero")
    return f"No difference detected at {p.n} seeds between {p.a.label} and {p.b.label} ({interval}); {need}."


def recommend(configs: list[Config], metric: str, tolerance: float = 1.0, max_time: float | None = None,
              max_memory_mb: float | None = None) -> list[str]:
    """The recommendation paragraph, one statement per line, from the numbers only."""
    if not configs:
        return ["No completed job has the metric yet: no recommendation."]
    sign = -1 if lower_is_better(metric) else 1
    order = ranked(configs, metric)
    best = order[0]
    lines = [f"Best {metric}: {describe(best, metric)}."]
    if len(order) > 1 and (p := paired(best, order[1])) is not None:
        lines.append(comparison(p, metric))
    within, unit = tolerance_amount(metric, tolerance, best.mean)
    close = [c for c in configs if sign * (best.mean - c.mean) <= within and "train_time_s" in c.costs]
    if close:
        cheapest = min(close, key=lambda c: c.costs["train_time_s"])
        if cheapest is best:
            lines.append(f"Cheapest within {unit} of the best: the best itself ({_fmt(best.costs['train_time_s'])} s).")
        else:
            ratio = cheapest.costs["train_time_s"] / best.costs["train_time_s"]
            line = (f"Cheapest within {unit} of the best: {describe(cheapest, metric)}, in {ratio:.0%} of the best's "
                    f"train time")
            p = paired(best, cheapest)
            lines.append(line + (f". {comparison(p, metric)}" if p is not None else "."))
    for cost, limit, what in (("train_time_s", max_time, "s of training"),
                              ("peak_memory_mb", max_memory_mb, "MiB of peak memory")):
        if limit is None:
            continue
        fits = [c for c in order if c.costs.get(cost, math.inf) <= limit]
        lines.append(f"Best within {_fmt(limit)} {what}: {describe(fits[0], metric)}." if fits else
                     f"No configuration fits within {_fmt(limit)} {what}.")
    return lines


def decision_section(configs: list[Config], metric: str, recommendation: list[str]) -> list[str]:
    """Markdown: the recommendation (``recommend``'s lines), the Pareto fronts, and every configuration against the
    best on shared seeds."""
    lines = ["## Recommendation", "", *(f"- {line}" for line in recommendation), ""]
    if not configs:
        return lines
    lines += ["## Pareto front", "",
              f"Configurations no other beats on both {metric} and the cost (mean over seeds); the rest are dominated.",
              ""]
    for cost, title in COSTS.items():
        front = pareto_front(configs, cost, metric)
        if front:
            lines.append(f"- {title}: " + "; ".join(f"{c.label} ({_fmt(c.mean)} at {_fmt(c.costs[cost])})"
                                                   for c in front))
    order = ranked(configs, metric)
    best = order[0]
    rows = []
    for config in order:
        p = paired(best, config) if config is not best else None
        rows.append([config.label, config.name, str(len(config.scores)), _fmt(config.mean), _fmt(config.std),
                     "" if p is None else _fmt(p.mean),
                     "" if p is None or p.n < 2 else f"[{_fmt(p.low)}, {_fmt(p.high)}]",
                     "best" if config is best else "" if p is None else "yes" if p.distinguishable else "no"])
    header = ["strategy", "configuration", "seeds", f"{metric} mean", "std", "best minus this", "95% paired t",
              "distinguishable"]
    lines += ["", f"## Against the best on shared seeds ({metric})", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]
