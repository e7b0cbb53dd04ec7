"""The sweep report's figures: the test metric by configuration, against trainable %, train time and forgetting
(retention); the Pareto fronts of the methods at their chosen learning rates; the budget curves."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from ftlab.core.atomic_files import atomic_write
from ftlab.core.metric_names import lower_is_better
from ftlab.sweeps.budget import AXES
from ftlab.sweeps.configurations import COSTS, Config, pareto_front
from ftlab.sweeps.methods import methods
from ftlab.sweeps.sweep_dir import config_name


def plot(configs: list[Config], rows: list[dict[str, Any]], keys: list[str], metric: str, monitor: str,
         sweep_dir: Path) -> list[Path]:
    """PNG plots: the test metric of every configuration (a row each, coloured by learning rate); the test metric
    against trainable fraction and against train time (a point per job, coloured by configuration)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not configs:
        return []
    paths = []
    # A row per configuration: mean ± std over seeds, a dot plot that stays readable with long labels and does not
    # hide differences of a point behind bars starting at zero.
    order = sorted(configs, key=lambda c: (c.method_label, c.lr if c.lr is not None else 0.0, c.label))
    lrs = sorted({c.lr for c in order if c.lr is not None})
    colors = {lr: plt.cm.tab10(i % 10) for i, lr in enumerate(lrs)}
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.35 * len(order)))
    seen = set()
    for y, c in enumerate(order):
        ax.errorbar(c.mean, y, xerr=c.std, fmt="o", capsize=3, color=colors.get(c.lr, "black"),
                    label=f"lr={c.lr:g}" if c.lr is not None and c.lr not in seen else None)
        seen.add(c.lr)
    chosen = {id(m.best) for m in methods(configs, monitor)} if any(c.lr is not None for c in configs) else set()
    ax.set_yticks(range(len(order)), [f"{c.label} ({_runs(len(c.scores))}{', chosen' * (id(c) in chosen)})"
                                      for c in order])
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} ({_spread(order)})")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{metric} by configuration" + (f" (chosen: each method's lr by {monitor})" if chosen else ""))
    if lrs:  # the legend in increasing lr, whatever order the methods put the rows in
        handles, names = ax.get_legend_handles_labels()
        pairs = sorted(zip(handles, names), key=lambda hn: float(hn[1].removeprefix("lr=")))
        ax.legend(*zip(*pairs), loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    paths.append(sweep_dir / "plot_metric_by_strategy_lr.png")
    names = {c.name: c for c in configs}
    for x_key, x_label, name in (("trainable_pct", "trainable parameters (%)", "plot_metric_vs_trainable.png"),
                                 ("train_time_s", "train time (s)", "plot_metric_vs_train_time.png")):
        fig2, ax2 = plt.subplots(figsize=(6, 4))
        for i, c in enumerate(order):
            pts = [(r[x_key], r[metric]) for r in rows if r["status"] == "completed"
                   and names.get(config_name(r, keys)) is c and isinstance(r.get(x_key), (int, float))
                   and isinstance(r.get(metric), (int, float))]
            ax2.scatter([p[0] for p in pts], [p[1] for p in pts], label=c.label, color=plt.cm.tab20(i % 20),
                        marker="osD^vPX*"[i // 20 % 8])
        ax2.set_xlabel(x_label)
        ax2.set_ylabel(f"{metric} (one point per job)")
        ax2.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
        ax2.grid(alpha=0.3)
        paths.append(sweep_dir / name)
        atomic_write(paths[-1], lambda p, f=fig2: f.savefig(p, format="png", dpi=100, bbox_inches="tight"))
        plt.close(fig2)
    atomic_write(paths[0], lambda p: fig.savefig(p, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)
    return paths


def _runs(n: int) -> str:
    return f"{n} run{'s' if n > 1 else ''}"


def _spread(configs: list[Config]) -> str:
    """What the error bars are: the spread over seeds, or nothing when every configuration ran once."""
    return "one run each, no spread" if all(len(c.scores) == 1 for c in configs) else "mean ± std over seeds"


def pareto_plot(configs: list[Config], metric: str, monitor: str, sweep_dir: Path) -> Path | None:
    """One PNG, a panel per cost (train time, peak memory, trainable %): each method at the learning rate validation
    chose for it, its mean validation metric (which chooses) with its seed spread, the Pareto front joined by a
    line, dominated methods hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    winners = [m.best for m in methods(configs, monitor)]
    costs = [c for c in COSTS if any(c in config.costs for config in winners)]
    if not winners or not costs:
        return None
    labels = sorted({c.label for c in winners})
    colors = {label: plt.cm.tab10(i % 10) for i, label in enumerate(labels)}
    fig, axes = plt.subplots(1, len(costs), figsize=(4.2 * len(costs), 3.6), squeeze=False)
    for ax, cost in zip(axes[0], costs):
        front = pareto_front(winners, cost, monitor)
        for config in winners:
            if cost not in config.costs:
                continue
            on_front = any(config is f for f in front)
            spread = statistics.stdev(config.val.values()) if len(config.val) > 1 else 0.0
            ax.errorbar(config.costs[cost], config.val_mean, yerr=spread, fmt="o", capsize=3,
                        color=colors[config.label], mfc=colors[config.label] if on_front else "white")
        ax.plot([c.costs[cost] for c in front], [c.val_mean for c in front], "-", color="0.4", lw=1, zorder=0)
        ax.set_xlabel(COSTS[cost])
        if cost == "trainable_pct":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{monitor} ({_spread(winners)})")
    handles = [plt.Line2D([], [], marker="o", ls="", color=colors[label], label=label) for label in labels]
    handles.append(plt.Line2D([], [], marker="o", ls="", color="0.3", mfc="white", label="dominated"))
    handles.append(plt.Line2D([], [], color="0.4", lw=1, label="Pareto front"))
    return _save_panels(fig, handles, min(len(handles), 7), sweep_dir / "plot_pareto.png")


def budget_plot(all_curves, monitor: str, sweep_dir: Path) -> Path | None:
    """One PNG, a panel per budget axis (training time, samples, FLOPs): each configuration's validation metric,
    mean over seeds with a ± std band, at every validation point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    axes_present = [a for a in AXES if any(a in c.x for c in all_curves)]
    if not all_curves or not axes_present:
        return None
    fig, axes = plt.subplots(1, len(axes_present), figsize=(4.2 * len(axes_present), 3.6), squeeze=False)
    for ax, axis in zip(axes[0], axes_present):
        for i, curve in enumerate(sorted(all_curves, key=lambda c: c.label)):
            if axis not in curve.x:
                continue
            color = plt.cm.tab10(i % 10)
            low = [m - s for m, s in zip(curve.mean, curve.std)]
            high = [m + s for m, s in zip(curve.mean, curve.std)]
            ax.plot(curve.x[axis], curve.mean, "o-", ms=3, color=color,
                    label=f"{curve.label} ({curve.seeds} seed{'s' if curve.seeds > 1 else ''})")
            ax.fill_between(curve.x[axis], low, high, color=color, alpha=0.15, lw=0)
        ax.set_xlabel(AXES[axis])
        ax.grid(alpha=0.3)
    one_run = all(c.seeds == 1 for c in all_curves)
    axes[0][0].set_ylabel(f"{monitor} ({'one run each' if one_run else 'mean ± std over seeds'})")
    handles = axes[0][0].get_legend_handles_labels()[0]
    return _save_panels(fig, handles, min(len(handles), 4), sweep_dir / "plot_budget_curves.png")


def _save_panels(fig, handles, ncol: int, path: Path) -> Path:
    """A row of panels with one legend above them, written as a PNG (atomically) and closed."""
    import matplotlib.pyplot as plt

    fig.legend(handles=handles, loc="upper center", ncol=ncol, frameon=False, bbox_to_anchor=(0.5, 1.02))
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=150, bbox_inches="tight"))
    plt.close(fig)
    return path


# The forgetting axis of the retention plot: the retention metric, how to turn it into "more is worse", the label.
FORGETTING_AXES = {
    "retention/ppl_change": (lambda v: 100 * v, "perplexity change on held-out general text (%)\n"
                                                "(retention.source; 0 = as untuned, > 0 = forgotten, < 0 = improved)"),
    "retention/cka": (lambda v: 1 - v, "representation drift on held-out general text (1 − debiased linear CKA)\n"
                                       "(retention.source; 0 = unchanged up to rotation and scale)"),
}


def retention_plot(rows: list[dict[str, Any]], metric: str, sweep_dir: Path) -> Path | None:
    """One PNG when jobs measured retention: the test metric against what fine-tuning forgot of held-out general text
    (causal LM: change of its perplexity; encoders: 1 - CKA to the untuned representations); a colour and marker
    per strategy, a point per job (seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    done = [r for r in rows if r["status"] == "completed" and isinstance(r.get(metric), (int, float))]
    key = next((k for k in FORGETTING_AXES if any(isinstance(r.get(k), (int, float)) for r in done)), None)
    if key is None:
        return None
    forgetting, x_label = FORGETTING_AXES[key]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axvline(0, color="0.6", lw=1, ls="--", zorder=0)
    for i, s in enumerate(sorted({str(r["strategy_name"]) for r in done})):
        pts = [(forgetting(r[key]), r[metric]) for r in done
               if str(r["strategy_name"]) == s and isinstance(r.get(key), (int, float))]
        if not pts:  # this strategy's jobs ran without retention
            continue
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=40, color=plt.cm.tab10(i % 10), marker="osD^vPX*"[i % 8],
                   label=f"{s} ({len(pts)} run{'s' if len(pts) > 1 else ''})")
    ax.set_xlabel(x_label)
    ax.set_ylabel(f"{metric} ({'lower' if lower_is_better(metric) else 'higher'} is better)")
    ax.set_title(f"{metric} vs forgetting, per strategy")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    path = sweep_dir / "plot_metric_vs_forgetting.png"
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=150, bbox_inches="tight"))
    plt.close(fig)
    return path
