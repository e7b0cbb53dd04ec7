"""A classification job's per-class test curves: ROC and precision-recall, as JSON and as one figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_curves(curves: dict[str, Any], metrics: dict[str, Any], out_dir: Path) -> list[Path]:
    """``test_curves.json`` and ``plot_test_curves.png`` (one-vs-rest ROC with AUROC, precision-recall with average
    precision, one line per class) in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = out_dir / "test_curves.json"
    data.write_text(json.dumps(curves) + "\n")
    auroc, ap = metrics["test/auroc_per_class"], metrics["test/average_precision_per_class"]
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(9, 3.8))
    for name, points in curves["roc"].items():
        roc.plot(points["fpr"], points["tpr"], label=f"{name} (AUROC {auroc[name]:.3f})")
    roc.plot([0, 1], [0, 1], ":", color="0.6", lw=1)
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, one class vs rest (test)")
    for name, points in curves["pr"].items():
        pr.plot(points["recall"], points["precision"], label=f"{name} (AP {ap[name]:.3f})")
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall (test)", ylim=(0, 1.02))
    for ax in (roc, pr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left" if ax is pr else "lower right")
    fig.tight_layout()
    image = out_dir / "plot_test_curves.png"
    fig.savefig(image, dpi=150)
    plt.close(fig)
    return [data, image]
