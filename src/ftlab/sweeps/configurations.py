"""A sweep's configurations (its completed jobs grouped by every swept value but ``seed``), each under a label that
no other configuration shares, with the validation score that chooses and the test score that reports.

Selection runs on validation only: a configuration's ``val`` (the monitored metric of each seed's best checkpoint)
ranks it; its ``scores`` (the test metric of the same checkpoints) are reported for what validation chose. Ranking
by the test metric would select on the test set and overstate the winner.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from ftlab.core.checks import is_number
from ftlab.core.metric_names import lower_is_better
from ftlab.sweeps.sweep_dir import by_configuration, config_name

COSTS = {"train_time_s": "train time (s)", "peak_memory_mb": "peak memory (MiB)", "trainable_pct": "trainable (%)"}
LR_KEYS = ("lr", "optimizer.lr")  # the swept keys that set the learning rate


@dataclass
class Config:
    """One configuration: the completed jobs that differ only in ``seed``."""

    name: str  # the swept overrides other than seed, e.g. strategy=partial,lr=0.001
    label: str  # distinct among the sweep's configurations, e.g. "partial(k=1) lr=1e-05"
    scores: dict[Any, float]  # seed -> test metric (what is reported)
    val: dict[Any, float] = field(default_factory=dict)  # seed -> monitored validation metric (what chooses)
    costs: dict[str, float] = field(default_factory=dict)  # mean of each cost over the seeds
    method: str = ""  # the name without the learning rate: configurations of one method differ in lr only
    method_label: str = ""  # the label without the learning rate
    lr: float | None = None  # what the optimizer trained with
    lr_grid: list[float] | None = None  # the method's own grid (strategy.lr_grid), when its config has one
    evidence: dict[str, Any] = field(default_factory=dict)  # test examples scored, test split size, class shares

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores.values())

    @property
    def std(self) -> float:
        return statistics.stdev(self.scores.values()) if len(self.scores) > 1 else 0.0

    @property
    def val_mean(self) -> float:
        return statistics.fmean(self.val.values()) if self.val else math.nan


def configurations(rows: list[dict[str, Any]], keys: list[str], metric: str) -> list[Config]:
    """Completed jobs with ``metric``, grouped by their swept values other than ``seed``.

    Jobs pair on the seed they ran with (``seed_value``, recorded by every job), also when ``seed`` was not swept:
    a sweep of strategies at the default seed shares that seed across all of them. A seed that two jobs of one
    configuration share (a duplicated job) keeps both, under their job numbers."""
    groups = by_configuration(rows, keys, lambda row: row["status"] == "completed" and is_number(row.get(metric)))
    out = []
    for name, members in groups.items():
        seeds = [m["seed_value"] if m.get("seed_value") is not None else m.get("seed") for m in members]
        unique = None not in seeds and len(set(map(str, seeds))) == len(seeds)
        ids = seeds if unique else [f"job {m['job']}" for m in members]
        costs = {c: statistics.fmean(m[c] for m in members) for c in COSTS
                 if all(is_number(m.get(c)) for m in members)}
        lrs = {m.get("lr_value") for m in members}
        # From the values themselves, not by splitting the name on ",": a value may be a list (lr_grid=[1e-4,2e-4]).
        method = config_name(members[0], [k for k in keys if k not in LR_KEYS])
        out.append(Config(
            name, "", {i: m[metric] for i, m in zip(ids, members)},
            {i: m["best_val"] for i, m in zip(ids, members) if is_number(m.get("best_val"))}, costs,
            method=method, lr=lrs.pop() if len(lrs) == 1 and is_number(next(iter(lrs), None)) else None,
            lr_grid=_grid(members[0].get("lr_grid")), evidence=_evidence(members)))
    _label(out, groups)
    return out


def _grid(value: Any) -> list[float] | None:
    return [float(v) for v in value] if isinstance(value, list) and value and all(is_number(v) for v in value) else None


def _evidence(members: list[dict[str, Any]]) -> dict[str, Any]:
    """What the test numbers rest on: the fewest test examples a seed scored, the test split's size, and the
    class shares of the test labels (classification: from the confusion matrix)."""
    out: dict[str, Any] = {}
    examples = [m.get("test_examples") for m in members]
    if all(is_number(e) for e in examples):
        out["examples"] = int(min(examples))
    split = [m.get("test_split") for m in members]
    if all(is_number(s) for s in split):
        out["split"] = int(max(split))
    if members[0].get("test_class_shares"):
        out["class_shares"] = members[0]["test_class_shares"]
    return out


def _label(configs: list[Config], groups: dict[str, list[dict[str, Any]]]) -> None:
    """Give each configuration a label no other shares: the strategy's label (``lora(r=8)``), then the learning
    rate where a method ran at several, then any other swept value that still tells two apart."""
    base = {c.name: str(groups[c.name][0].get("strategy_name") or c.method) for c in configs}
    by_method: dict[str, list[Config]] = {}
    for c in configs:
        by_method.setdefault(c.method, []).append(c)
    first = {method: base[members[0].name] for method, members in by_method.items()}
    method_labels = {}
    for method, label in first.items():
        namesakes = [m for m, other in first.items() if other == label]
        # Two methods under one strategy label (another swept value differs): add what tells them apart.
        method_labels[method] = f"{label} [{_difference(method, namesakes)}]" if len(namesakes) > 1 else label
    for c in configs:
        c.method_label = method_labels[c.method]
        several_lrs = len({o.lr for o in by_method[c.method]}) > 1
        c.label = c.method_label + (f" lr={c.lr:g}" if several_lrs and c.lr is not None else "")
    taken: dict[str, list[Config]] = {}
    for c in configs:
        taken.setdefault(c.label, []).append(c)
    for label, namesakes in taken.items():
        if len(namesakes) > 1:  # still alike (e.g. one lr given two ways): the swept values tell them apart
            for c in namesakes:
                c.label = f"{label} [{_difference(c.name, [o.name for o in namesakes])}]"


def _difference(method: str, methods: list[str]) -> str:
    """The parts of ``method`` (``key=value,...``) that not every method in ``methods`` shares."""
    shared = set.intersection(*(set(m.split(",")) for m in methods))
    return ",".join(part for part in method.split(",") if part not in shared) or method


def ranked(configs: list[Config], monitor: str) -> list[Config]:
    """Best first by the validation metric (``monitor``'s direction); a configuration without one goes last."""
    sign = -1 if lower_is_better(monitor) else 1
    return sorted(configs, key=lambda c: (math.isnan(c.val_mean), -sign * c.val_mean if c.val else 0.0))


def pareto_front(configs: list[Config], cost: str, monitor: str) -> list[Config]:
    """Configurations that no other beats on both validation quality and ``cost`` (at least as good on both,
    better on one), cheapest first."""
    sign = -1 if lower_is_better(monitor) else 1
    have = [c for c in configs if cost in c.costs and c.val]

    def dominates(a: Config, b: Config) -> bool:
        better_or_equal = sign * a.val_mean >= sign * b.val_mean and a.costs[cost] <= b.costs[cost]
        return better_or_equal and (sign * a.val_mean > sign * b.val_mean or a.costs[cost] < b.costs[cost])

    return sorted((c for c in have if not any(dominates(o, c) for o in have if o is not c)),
                  key=lambda c: c.costs[cost])
