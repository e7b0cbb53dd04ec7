"""The sweep report's figures: the test metric by strategy and learning rate, against trainable % and train time."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from ftlab.sweeps.sweep_dir import atomic_write


def plot(rows: list[dict[str, Any]], metric: str, sweep_dir: Path) -> list[Path]:
    """PNG plots: test metric by strategy and lr; metric vs trainable fraction; metric vs train time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["status"] == "completed" and isinstance(r.get(metric), (int, float))]
    if not done:
        return []
    paths = []
    strategies = sorted({str(r["strategy_name"]) for r in done})
    lrs = sorted({r["lr_value"] for r in done if r["lr_value"] is not None})
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / max(len(lrs), 1)
    for j, lr in enumerate(lrs):
        heights, errors = [], []
        for s in strategies:
            vals = [r[metric] for r in done if str(r["strategy_name"]) == s and r["lr_value"] == lr]
            heights.append(statistics.fmean(vals) if vals else 0.0)
            errors.append(statistics.stdev(vals) if len(vals) > 1 else 0.0)
        ax.bar([i + j * width for i in range(len(strategies))], heights, width, yerr=errors, capsize=3,
               label=f"lr={lr:g}")
    ax.set_xticks([i + width * (len(lrs) - 1) / 2 for i in range(len(strategies))], strategies)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by strategy and lr (mean ± std over seeds)")
    ax.legend()
    paths.append(sweep_dir / "plot_metric_by_strategy_lr.png")
    for x_key, x_label, name in (("trainable_pct", "trainable parameters (%)", "plot_metric_vs_trainable.png"),
                                 ("train_time_s", "train time (s)", "plot_metric_vs_train_time.png")):
        fig2, ax2 = plt.subplots(figsize=(6, 4))
        for s in strategies:
            pts = [(r[x_key], r[metric]) for r in done if str(r["strategy_name"]) == s and r.get(x_key) is not None]
            ax2.scatter([p[0] for p in pts], [p[1] for p in pts], label=s)
        ax2.set_xlabel(x_label)
        ax2.set_ylabel(metric)
        ax2.legend()
        paths.append(sweep_dir / name)
        atomic_write(paths[-1], lambda p, f=fig2: f.savefig(p, format="png", dpi=100, bbox_inches="tight"))
        plt.close(fig2)
    atomic_write(paths[0], lambda p: fig.savefig(p, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)
    return paths
