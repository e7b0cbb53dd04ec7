"""PyTorch fp32, ONNX fp32 and ONNX int8 side by side on a job's test split: what a comparison reports (the task
metric, file size, latency; the int8 model's drop) and how it is shown (metrics.json's scalars, the loud warning, the
model card's table, the sweep report's lines). Measuring is ``variant_measures.py``; nothing here needs PyTorch, so the
sweep report (a Hydra callback of every run) and the model card import this without it.

The int8 model's drop is measured against PyTorch fp32 in points: percentage points for accuracy and F1, percent of
the fp32 perplexity for a causal LM. A drop above ``onnx.tolerance`` is reported loudly: a warning line on the console
and in the log, ``deploy/int8_within_tolerance=false`` in metrics.json, and a warning in the model card.
"""

from __future__ import annotations

from typing import Any

VARIANTS = ("torch_fp32", "onnx_fp32", "onnx_int8")
PRIMARY = {"text_classification": "acc", "token_classification": "f1", "causal_lm": "ppl"}
LATENCY_BATCHES = {1: 30, 32: 5}  # batch size -> timed batches per variant
ROUNDS = 5  # the variants take turns this many times


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile of ``values`` (also the serving benchmark's)."""
    values = sorted(values)
    pos = q * (len(values) - 1)
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def int8_drop(task_name: str, reference: float, int8: float) -> float:
    """How many points worse int8 is than fp32: percentage points (accuracy, F1) or percent (perplexity)."""
    if PRIMARY[task_name] == "ppl":
        return 100 * (int8 - reference) / reference
    return 100 * (reference - int8)


def flat_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The scalars of a comparison that metrics.json keeps at the top level (the sweep report's columns)."""
    out = {}
    if "int8_drop" in report:
        fp32, int8 = report["torch_fp32"], report["onnx_int8"]
        out.update({"deploy/int8_drop": report["int8_drop"],
                    "deploy/int8_within_tolerance": report["int8_within_tolerance"],
                    "deploy/int8_size_ratio": int8["size_mb"] / report["onnx_fp32"]["size_mb"]})
        for size in LATENCY_BATCHES:
            key = f"batch_{size}"
            out[f"deploy/int8_speedup_b{size}"] = fp32["latency_ms"][key]["p50"] / int8["latency_ms"][key]["p50"]
    return out


def warning(report: dict[str, Any]) -> str | None:
    """The loud line for an int8 model that lost more than the tolerance, or None."""
    if report.get("int8_within_tolerance", True):
        return None
    metric = report["metric"]
    unit = "% (perplexity up)" if metric == "ppl" else " points"
    return (f"WARNING: the int8 ONNX model loses {report['int8_drop']:.2f}{unit} of test {metric} against PyTorch "
            f"fp32 ({report['torch_fp32'][metric]:.4f} -> {report['onnx_int8'][metric]:.4f}), more than "
            f"onnx.tolerance={report['tolerance']:g}: do not ship it without checking")


def table(report: dict[str, Any]) -> str:
    """A markdown table of the variants (for the model card and the console)."""
    metric = report["metric"]
    lines = [f"| variant | test {metric} | size (MB) | p50 / p95 ms, batch 1 | p50 / p95 ms, batch 32 |",
             "|---|---|---|---|---|"]
    for name in VARIANTS:
        if name in report:
            v, ms = report[name], report[name]["latency_ms"]
            lines.append(f"| {name} | {v[metric]:.4f} | {v['size_mb']:.1f} | "
                         f"{ms['batch_1']['p50']:.2f} / {ms['batch_1']['p95']:.2f} | "
                         f"{ms['batch_32']['p50']:.2f} / {ms['batch_32']['p95']:.2f} |")
    return "\n".join(lines)


def int8_warnings(rows: list[dict[str, Any]]) -> list[str]:
    """The sweep report's loud lines: jobs whose int8 model lost more than their ``onnx.tolerance``."""
    over = [r for r in rows if r.get("deploy/int8_within_tolerance") is False]
    if not over:
        return []
    jobs = ", ".join(f"job {r['job']} ({r['deploy/int8_drop']:.2f} points)" for r in over)
    return ["", f"**WARNING: int8 ONNX models over their onnx.tolerance (deploy/int8_drop):** {jobs}; do not ship "
                "them without checking."]
