"""The report's tables: which metric columns a sweep has, mean and std over seeds, Markdown and CSV rows."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from ftlab.sweeps.sweep_dir import by_configuration

TEST_ORDER = ("test/acc", "test/f1", "test/precision", "test/recall", "test/loss", "test/ppl")
COST_COLUMNS = ("trainable_pct", "train_time_s", "samples_per_s", "peak_memory_mb")
# What fine-tuning forgot of held-out general text (retention.source): perplexity change (LM), CKA / cosine (encoders).
RETENTION_COLUMNS = ("retention/ppl_change", "retention/ppl_before", "retention/ppl_after", "retention/cka",
                     "retention/cosine")
# The int8 ONNX model against PyTorch fp32 (export_onnx=true onnx.quantize=int8): drop in points, size, speed-up.
DEPLOY_COLUMNS = ("deploy/int8_drop", "deploy/int8_size_ratio", "deploy/int8_speedup_b1", "deploy/int8_speedup_b32")


def metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    """best_val, the test metrics the jobs have (then the untuned checkpoint's, if measured), retention, then costs."""
    present = {k for row in rows for k in row if k.startswith(("test/", "before/test/", "retention/", "deploy/"))}
    tests = [k for k in TEST_ORDER if k in present] + sorted(k for k in present if k.startswith("test/")
                                                             and k not in TEST_ORDER)
    before = [f"before/{k}" for k in tests if f"before/{k}" in present]
    retention = [k for k in RETENTION_COLUMNS if k in present]
    deploy = [k for k in DEPLOY_COLUMNS if k in present]
    return ["best_val", *tests, *before, *retention, *deploy, *COST_COLUMNS]


def aggregate(rows: list[dict[str, Any]], keys: list[str], columns: list[str]) -> list[dict[str, Any]]:
    """Mean and std over seeds for configurations that differ only in ``seed`` (completed jobs only)."""
    if "seed" not in keys:
        return []
    groups = by_configuration(rows, keys, lambda row: row["status"] == "completed")
    out = []
    for name, members in groups.items():
        agg: dict[str, Any] = {"overrides": name, "seeds": len(members)}
        for col in columns:
            nums = [m[col] for m in members if isinstance(m.get(col), (int, float)) and math.isfinite(m[col])]
            if nums:
                agg[f"{col} mean"] = statistics.fmean(nums)
                agg[f"{col} std"] = statistics.stdev(nums) if len(nums) > 1 else 0.0
        out.append(agg)
    return out


def fmt(value: Any) -> str:
    """A table cell: floats to 4 significant digits, NaN and None empty, ``|`` escaped."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|")


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """``rows`` as a Markdown table of ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_rows(path: Path, rows: list[dict[str, Any]], fields: list[str] | None = None) -> None:
    """``rows`` as CSV (``fields``, default the first row's keys; other keys left out)."""
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields or list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def per_class_auroc(rows: list[dict[str, Any]], keys: list[str]) -> list[str]:
    """Markdown: test AUROC per class (one vs rest), mean over the seeds of each configuration (classification)."""
    groups = {name: [row["auroc_per_class"] for row in members] for name, members in by_configuration(
        rows, keys, lambda row: row["status"] == "completed" and row.get("auroc_per_class")).items()}
    if not groups:
        return []
    classes = sorted({c for members in groups.values() for m in members for c in m})
    table = [{"configuration": name, "seeds": len(members),
              **{c: statistics.fmean(m[c] for m in members if c in m) for c in classes}}
             for name, members in groups.items()]
    return ["", "## Test AUROC per class (one vs rest, mean over seeds)", "",
            markdown_table(table, ["configuration", "seeds", *classes])]
