"""Measuring the variants of ``variants.py`` (PyTorch fp32, ONNX fp32, ONNX int8) on a job's test split.

The metric is computed by the task's own metric code (``Task.metrics`` / ``metric_inputs`` / ``derived_metrics``, as
the test pass of training does) on logits from each runtime, so ``torch_fp32`` reproduces the job's ``test/`` numbers.
Latency is one forward pass (for a causal LM: the prefill of the test rows) on real test rows, padded per batch, at
batch 1 and batch 32, over a bounded number of timed batches after a warm-up, the variants taking turns batch by
batch; p50 and p95 in milliseconds. Each runtime uses its default threads (PyTorch: one per core; ONNX Runtime: one
per physical core).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ftlab.deploy.variants import LATENCY_BATCHES, PRIMARY, ROUNDS, VARIANTS, int8_drop, quantile


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
