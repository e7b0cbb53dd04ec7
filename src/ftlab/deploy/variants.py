"""PyTorch fp32, ONNX fp32 and ONNX int8 side by side on a job's test split: the task metric, file size, latency.

The metric is computed by the task's own metric code (``Task.metrics`` / ``metric_inputs`` / ``derived_metrics``, as
the test pass of training does) on logits from each runtime, so ``torch_fp32`` reproduces the job's ``test/`` numbers.
Latency is one forward pass (for a causal LM: the prefill of the test rows) on real test rows, padded per batch, at
batch 1 and batch 32, over a bounded number of timed batches after a warm-up, the variants taking turns batch by
batch; p50 and p95 in milliseconds. Each runtime uses its default threads (PyTorch: one per core; ONNX Runtime: one
per physical core).

The int8 model's drop is measured against PyTorch fp32 in points: percentage points for accuracy and F1, percent of
the fp32 perplexity for a causal LM. A drop above ``onnx.tolerance`` is reported loudly: a warning line on the console
and in the log, ``deploy/int8_within_tolerance=false`` in metrics.json, and a warning in the model card.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

log = logging.getLogger(__name__)

VARIANTS = ("torch_fp32", "onnx_fp32", "onnx_int8")
PRIMARY = {"text_classification": "acc", "token_classification": "f1", "causal_lm": "ppl"}
LATENCY_BATCHES = {1: 30, 32: 5}  # batch size -> timed batches per variant
ROUNDS = 5  # the variants take turns this many times


def evaluate(task, label_names: list[str], batches, model) -> dict[str, float]:
    """The task's test metrics of ``model`` (anything called like a transformers model that returns ``.logits``)."""
    from torchmetrics import MeanMetric

    metrics = task.metrics(label_names, "deploy")
    loss = MeanMetric()
    with torch.inference_mode():
        for batch in batches:
            labels = batch["labels"]
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
            loss.update(task.logits_loss(logits, labels), weight=task.loss_weight(labels))
            if metrics is not None:
                metrics.update(task.metric_inputs(logits), labels)
    values = dict(metrics.compute()) if metrics is not None else {}
    values["deploy/loss"] = loss.compute()
    values.update(task.derived_metrics("deploy", values))
    return {k.removeprefix("deploy/"): float(v) for k, v in values.items() if torch.as_tensor(v).numel() == 1}


def latency(models: dict[str, Any], rows: list[dict], collate) -> dict[str, dict[str, dict[str, float]]]:
    """p50 / p95 milliseconds of one forward pass of each model at each batch size of ``LATENCY_BATCHES`` (rows
    reused in order when the test split is smaller than a batch).

    The models take turns in ``ROUNDS`` rounds, so a change in the machine's load hits all of them alike; each turn
    starts with an untimed batch, which absorbs the previous runtime's threads still spinning down (measured: timed
    right after an ONNX Runtime session, a PyTorch batch of one took 50x its own time on 2 cores)."""
    times: dict[str, dict[int, list[float]]] = {name: {size: [] for size in LATENCY_BATCHES} for name in models}
    with torch.inference_mode():
        for size, timed in LATENCY_BATCHES.items():
            per_turn = -(-timed // ROUNDS)
            batches = [collate([rows[(i * size + j) % len(rows)] for j in range(size)]) for i in range(per_turn + 1)]
            for batch in batches:
                batch.pop("labels", None)
            for _ in range(ROUNDS):
                for name, model in models.items():
                    for i, batch in enumerate(batches):
                        start = time.perf_counter()
                        model(**batch)
                        if i:
                            times[name][size].append((time.perf_counter() - start) * 1000)
    return {name: {f"batch_{size}": {"p50": quantile(t, 0.5), "p95": quantile(t, 0.95)}
                   for size, t in per_size.items()} for name, per_size in times.items()}


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


def compare(task, label_names: list[str], dataset, collate, batch_size: int, models: dict[str, Any],
            sizes: dict[str, int], tolerance: float) -> dict[str, Any]:
    """Every variant's metrics, size and latency; with an int8 variant, its drop and whether it is within
    ``tolerance``. ``models`` maps variant names to models; ``sizes`` their file sizes in bytes."""
    from torch.utils.data import DataLoader

    rows = [dataset[i] for i in range(len(dataset))]
    batches = list(DataLoader(rows, batch_size=batch_size, collate_fn=collate))
    primary = PRIMARY[task.name]
    report: dict[str, Any] = {"metric": primary, "tolerance": tolerance, "test_examples": len(rows)}
    models = {name: models[name] for name in VARIANTS if name in models}
    timings = latency(models, rows, collate)
    for name, model in models.items():
        report[name] = {**evaluate(task, label_names, batches, model), "size_mb": sizes[name] / 2**20,
                        "latency_ms": timings[name]}
    if "onnx_int8" in report:
        drop = int8_drop(task.name, report["torch_fp32"][primary], report["onnx_int8"][primary])
        report.update(int8_drop=drop, int8_within_tolerance=drop <= tolerance)
    return report


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
