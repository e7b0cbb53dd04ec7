"""The decision a sweep supports, in words: validation chooses (each method at the learning rate validation chose
for it), the test metric reports what was chosen with its paired interval, the probability that each method is
within the tolerance of the best, and the caveats the evidence needs. Claims no more than the numbers show."""

from __future__ import annotations

import math
from typing import Any

from ftlab.core.metric_names import lower_is_better
from ftlab.sweeps.configurations import COSTS, Config, pareto_front, ranked
from ftlab.sweeps.evidence import evidence_lines
from ftlab.sweeps.methods import Method, lr_warnings, methods
from ftlab.sweeps.paired import comparison, paired
from ftlab.sweeps.probability import RESAMPLES, Odds, bootstrap, tolerance_amount
from ftlab.sweeps.tables import fmt


def describe(config: Config, metric: str, monitor: str) -> str:
    """``**label** (`name`): test mean ± std over n seed(s) (validation mean)``."""
    spread = f" ± {fmt(config.std)}" if len(config.scores) > 1 else ""
    return (f"**{config.label}** (`{config.name}`): {metric} {fmt(config.mean)}{spread} over {len(config.scores)} "
            f"seed(s) ({monitor} {fmt(config.val_mean)})")


def _odds_phrase(odds: Odds, unit: str, metric: str) -> str:
    return (f"within {unit} of the best with probability {odds.within:.2f} (expected regret {fmt(odds.regret)} "
            f"of {metric})")


def recommend(configs: list[Config], metric: str, monitor: str, tolerance: float = 1.0,
              max_time: float | None = None, max_memory_mb: float | None = None) -> list[str]:
    """The recommendation paragraph, one statement per line, from the numbers only."""
    if not configs:
        return ["No completed job has the metric yet: no recommendation."]
    found = methods(configs, monitor)
    winners = [m.best for m in found]
    best = winners[0]
    lines = [f"Chosen on {monitor} (each job's monitored validation metric at its best checkpoint), each method at "
             f"the learning rate validation chose for it; {metric} only reports what was chosen.",
             f"Best on validation: {describe(best, metric, monitor)}."]
    if len(winners) > 1 and (p := paired(best, winners[1])) is not None:
        lines.append(comparison(p, metric))
    within, unit = tolerance_amount(metric, tolerance, best.mean)
    odds = bootstrap(winners, metric, within)
    if odds is not None:
        lines.append(f"Probabilities from a paired bootstrap over the {odds[best.name].seeds} seeds every method ran "
                     f"({RESAMPLES} resamples of {metric}; coarse with few seeds): " + "; ".join(
                         f"{c.label} {_odds_phrase(odds[c.name], unit, metric)}" for c in winners) + ".")
    elif len(winners) > 1:
        lines.append("No probability: fewer than two seeds are shared by every method (run the same seeds for "
                     "each, e.g. `seed=1,2,3`).")
    lines += _cheapest(winners, metric, monitor, tolerance, odds)
    lines += lr_warnings(found, monitor)
    lines += evidence_lines(configs, metric)
    for cost, limit, what in (("train_time_s", max_time, "s of training"),
                              ("peak_memory_mb", max_memory_mb, "MiB of peak memory")):
        if limit is None:
            continue
        fits = [c for c in winners if c.costs.get(cost, math.inf) <= limit]
        lines.append(f"Best within {fmt(limit)} {what}: {describe(fits[0], metric, monitor)}." if fits else
                     f"No configuration fits within {fmt(limit)} {what}.")
    return lines


def _cheapest(winners: list[Config], metric: str, monitor: str, tolerance: float,
              odds: dict[str, Odds] | None) -> list[str]:
    """The cheapest method within the tolerance of the best on validation, its test result and its odds."""
    best = winners[0]
    sign = -1 if lower_is_better(monitor) else 1
    within_val, unit = tolerance_amount(monitor, tolerance, best.val_mean)
    metric_unit = tolerance_amount(metric, tolerance, best.mean)[1]  # the odds are on the test metric, in its units
    close = [c for c in winners if sign * (best.val_mean - c.val_mean) <= within_val and "train_time_s" in c.costs]
    if not close:
        return []
    cheapest = min(close, key=lambda c: c.costs["train_time_s"])
    if cheapest is best:
        return [f"Cheapest within {unit} of the best on validation: the best itself "
                f"({fmt(best.costs['train_time_s'])} s)."]
    ratio = cheapest.costs["train_time_s"] / best.costs["train_time_s"]
    line = (f"Cheapest within {unit} of the best on validation: {describe(cheapest, metric, monitor)}, in "
            f"{ratio:.0%} of {best.label}'s train time")
    if odds is not None:
        line += f"; on {metric} it is {_odds_phrase(odds[cheapest.name], metric_unit, metric)}"
    p = paired(best, cheapest)
    return [line + (f". {comparison(p, metric)}" if p is not None else ".")]


def decision_section(configs: list[Config], metric: str, monitor: str, recommendation: list[str],
                     tolerance: float = 1.0) -> list[str]:
    """Markdown: the recommendation (``recommend``'s lines), the learning rate each method chose, the Pareto fronts
    of the methods at their chosen rates, and every configuration against the best."""
    lines = ["## Recommendation", "", *(f"- {line}" for line in recommendation), ""]
    if not configs:
        return lines
    found = methods(configs, monitor)
    winners = [m.best for m in found]
    if any(len(m.tried) > 1 for m in found):
        lines += _lr_table(found, monitor)
    lines += ["## Pareto front", "",
              f"Each method at its chosen learning rate; no other beats it on both {monitor} (which chooses) and the "
              f"cost (means over seeds); {metric} reported beside it.", ""]
    for cost, title in COSTS.items():
        front = pareto_front(winners, cost, monitor)
        if front:
            lines.append(f"- {title}: " + "; ".join(
                f"{c.label} ({monitor} {fmt(c.val_mean)}, {metric} {fmt(c.mean)} at {fmt(c.costs[cost])})"
                for c in front))
    return lines + _against_best(configs, winners, metric, monitor, tolerance)


def _lr_table(found: list[Method], monitor: str) -> list[str]:
    header = ["method", "learning rates tried", "chosen on validation", f"{monitor} at each", "note"]
    rows = []
    for m in found:
        note = f"best at the {m.edge} lr tried: widen the grid" if m.edge else ""
        rows.append([m.label, ", ".join(f"{lr:g}" for lr in m.lrs), f"{m.best.lr:g}" if m.best.lr else "",
                     ", ".join(fmt(c.val_mean) for c in m.tried if c.lr is not None), note])
    return ["## Each method at its own learning rate", "", "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header), *("| " + " | ".join(row) + " |" for row in rows), ""]


def _against_best(configs: list[Config], winners: list[Config], metric: str, monitor: str,
                  tolerance: float) -> list[str]:
    best = winners[0]
    within, unit = tolerance_amount(metric, tolerance, best.mean)
    odds = bootstrap(winners, metric, within) or {}
    rows: list[list[Any]] = []
    for config in ranked(configs, monitor):
        p = paired(best, config) if config is not best else None
        o = odds.get(config.name)
        rows.append([config.label, config.name, str(len(config.scores)), fmt(config.val_mean), fmt(config.mean),
                     fmt(config.std), "" if p is None else fmt(p.mean),
                     "" if p is None or p.n < 2 else f"[{fmt(p.low)}, {fmt(p.high)}]",
                     "best" if config is best else "" if p is None else "yes" if p.distinguishable else "no",
                     "" if o is None else f"{o.within:.2f}", "" if o is None else fmt(o.regret)])
    header = ["configuration", "overrides", "seeds", f"{monitor} mean", f"{metric} mean", "std", "best minus this",
              "95% paired t", "distinguishable", f"P(within {unit})", "expected regret"]
    return ["", f"## Against the best on shared seeds ({metric}; ranked by {monitor})", "",
            "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]
