"""DDP with 2 CPU processes (gloo): freezing, exact test metrics, export, and Hydra multirun without duplicates."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import make_tiny_csv, tiny_overrides
from tests.test_run_py import run_cli

pytestmark = pytest.mark.slow


def test_ddp_cpu_freezes_syncs_and_scores_the_exact_test_set(tiny_model_dir, tmp_path):
    csv = make_tiny_csv(tmp_path / "odd.csv", per_class=21)
    job = tmp_path / "job"
    # 15% of 21 per class = 3 per class: 9 test examples, uneven across 2 ranks.
    proc = run_cli(*tiny_overrides(tiny_model_dir, csv, job), "trainer=ddp_cpu", "strategy=partial",
                   "data.test_size=0.15", "trainer.max_epochs=2", "lr=3e-3", f"hydra.run.dir={job}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (job / "train_ddp_process_1.log").exists()  # rank 1 ran in this job's directory
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["data/split_sizes"]["test"] == 9
    assert sum(map(sum, metrics["test/confusion_matrix"]["matrix"])) == 9  # each test example exactly once

    # Frozen parameters are bit-identical to the base checkpoint; the trained block and head moved.
    base = load_file(tiny_model_dir / "model.safetensors")
    tuned = load_file(job / "model" / "model.safetensors")
    for name, tensor in base.items():
        key = name if name in tuned else f"bert.{name}"
        frozen = not key.startswith(("bert.encoder.layer.1.", "bert.pooler."))
        assert torch.equal(tuned[key], tensor) == frozen, key

    # Test accuracy from the 2-process run equals a single-process evaluation of the exported model.
    from transformers import pipeline

    from ftlab.tasks.labelled_splits import clean_and_split
    from ftlab.tasks.labelled_texts import load_source

    raw = load_source({"source": "files", "path": str(csv), "text_column": "text", "label_column": "label"})
    splits, _ = clean_and_split(raw, 0.1, 0.15, seed=42)
    texts, labels = splits["test"]
    predictions = [p["label"] for p in pipeline("text-classification", model=str(job / "model"), device="cpu")(texts)]
    accuracy = sum(p == y for p, y in zip(predictions, labels)) / len(labels)
    assert metrics["test/acc"] == pytest.approx(accuracy)


def test_multirun_with_ddp_runs_each_job_once(tiny_model_dir, tiny_csv, tmp_path):
    sweep, stray = tmp_path / "sweep", tmp_path / "stray-run-dir"
    args = [o for o in tiny_overrides(tiny_model_dir, tiny_csv, tmp_path) if not o.startswith("output_dir")]
    proc = run_cli("-m", "strategy=full,partial", "trainer=ddp_cpu", "debug=smoke", f"hydra.sweep.dir={sweep}",
                   f"hydra.run.dir={stray}", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1"]  # no duplicate sweep started by rank 1
    for job in jobs:
        assert (sweep / job / "metrics.json").exists() and (sweep / job / "train_ddp_process_1.log").exists()
        assert not any((sweep / job).glob("[0-9]*"))
    assert not stray.exists()
    assert (proc.stdout + proc.stderr).count("Launching 2 jobs locally") == 1
