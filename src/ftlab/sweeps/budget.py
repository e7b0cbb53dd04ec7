"""Quality against budget: each configuration's validation curve (mean and spread over seeds) against training
time, samples seen and estimated FLOPs, and which configuration leads at fractions of the largest job's budget."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from ftlab.core.metric_names import lower_is_better
from ftlab.sweeps.sweep_dir import by_configuration

AXES = {"train_time_s": "training time (s, validation excluded)", "samples": "training samples seen",
        "flops": "estimated training FLOPs"}
FRACTIONS = (0.25, 0.5, 1.0)


@dataclass
class Curve:
    """One configuration's curve: per validation point (aligned by index: its seeds share the schedule), the mean
    of each axis and the mean and standard deviation of the monitored metric."""

    label: str
    name: str
    seeds: int
    x: dict[str, list[float]]
    mean: list[float]
    std: list[float]
    runs: list[list[dict[str, float]]]  # each seed's points


def curves(rows: list[dict[str, Any]], keys: list[str], monitor: str,
           labels: dict[str, str] | None = None) -> list[Curve]:
    """The budget curves of the configurations whose jobs recorded ``curve.csv`` (running jobs included), under
    ``labels`` (configuration name -> its distinct label; else the strategy's label)."""
    groups = by_configuration(rows, keys, lambda row: row.get("curve") and all(monitor in p for p in row["curve"]))
    out = []
    for name, members in groups.items():
        runs = [row["curve"] for row in members]
        n = min(len(run) for run in runs)
        values = [[run[i][monitor] for run in runs] for i in range(n)]
        x = {axis: [statistics.fmean(run[i][axis] for run in runs) for i in range(n)] for axis in AXES
             if all(run[i].get(axis) is not None for run in runs for i in range(n))}
        label = (labels or {}).get(name) or str(members[0].get("strategy_name") or name)
        out.append(Curve(label, name, len(runs), x,
                         [statistics.fmean(v) for v in values],
                         [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values], runs))
    return out


def best_by(run: list[dict[str, float]], axis: str, budget: float, monitor: str) -> float | None:
    """The best monitored value a run had reached within ``budget`` (what its best checkpoint would give if
    training stopped there); None if it had no validation by then."""
    reached = [p[monitor] for p in run if p.get(axis) is not None and p[axis] <= budget]
    if not reached:
        return None
    return min(reached) if lower_is_better(monitor) else max(reached)


def leaders(all_curves: list[Curve], monitor: str, axis: str = "train_time_s") -> list[str]:
    """Markdown lines: at 25%, 50% and 100% of the largest job's budget on ``axis``, the configurations in order
    of the mean best-so-far over their seeds (a configuration counts once every seed has a point by then)."""
    ends = [p[axis] for c in all_curves for run in c.runs for p in run if p.get(axis) is not None]
    if not ends:
        return []
    sign = -1 if lower_is_better(monitor) else 1
    lines = []
    for fraction in FRACTIONS:
        budget = fraction * max(ends)
        scored = []
        for c in all_curves:
            best = [best_by(run, axis, budget, monitor) for run in c.runs]
            if all(b is not None for b in best):
                scored.append((statistics.fmean(best), c))
        scored.sort(key=lambda item: -sign * item[0])
        ranking = "; ".join(f"{c.label} {value:.4g}" for value, c in scored) or "no configuration has validated yet"
        lines.append(f"- At {fraction:.0%} of the largest job's {AXES[axis]} ({budget:.4g}): {ranking}")
    return lines
