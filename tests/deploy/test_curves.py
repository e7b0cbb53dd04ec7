"""Per-class ROC and precision-recall curves of a classification job: values that agree with an exact computation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ftlab.train import train
from tests.helpers import compose, tiny_overrides


@pytest.mark.slow
def test_roc_and_pr_per_class_agree_with_an_exact_computation(tiny_model_dir, tiny_csv, tmp_path):
    import torch
    from sklearn.metrics import average_precision_score, roc_auc_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ftlab.tasks.labelled_splits import clean_and_split
    from ftlab.tasks.labelled_texts import load_source

    # One epoch at a small lr: an imperfect classifier, so the curves are not trivial.
    metrics = train(compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, "trainer.max_epochs=1", "lr=1e-4",
                                           "data.test_size=0.3")))
    names = ["food", "sport", "tech"]
    assert set(metrics["test/auroc_per_class"]) == set(names)
    assert metrics["test/auroc"] == pytest.approx(np.mean(list(metrics["test/auroc_per_class"].values())))

    raw = load_source({"source": "files", "path": str(tiny_csv), "text_column": "text", "label_column": "label"})
    texts, labels = clean_and_split(raw, 0.1, 0.3, seed=42)[0]["test"]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    with torch.no_grad():
        probs = model(**tokenizer(texts, padding=True, truncation=True, max_length=16,
                                  return_tensors="pt")).logits.softmax(-1).numpy()
    for i, name in enumerate(names):
        truth = np.array([label == name for label in labels])
        # 200 threshold bins: within a bin's width of the exact values.
        assert metrics["test/auroc_per_class"][name] == pytest.approx(roc_auc_score(truth, probs[:, i]), abs=0.02)
        assert metrics["test/average_precision_per_class"][name] == pytest.approx(
            average_precision_score(truth, probs[:, i]), abs=0.05)

    curves = json.loads((tmp_path / "test_curves.json").read_text())
    for name in names:
        fpr, tpr = np.array(curves["roc"][name]["fpr"]), np.array(curves["roc"][name]["tpr"])
        order = np.argsort(fpr, kind="stable")
        area = np.trapezoid(tpr[order], fpr[order])
        assert area == pytest.approx(metrics["test/auroc_per_class"][name], abs=1e-4)  # the saved curve is the one
        assert {(fpr.min(), tpr.min()), (fpr.max(), tpr.max())} == {(0.0, 0.0), (1.0, 1.0)}
    assert (tmp_path / "plot_test_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "test/curves" not in json.loads((tmp_path / "metrics.json").read_text())


@pytest.mark.slow
def test_budget_curve_points_are_where_the_logs_say(tiny_model_dir, tiny_csv, tmp_path):
    import csv

    metrics = train(compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, "trainer.max_epochs=2",
                                           "trainer.val_check_interval=3", "logger=csv", "lr=3e-3")))
    with open(tmp_path / "curve.csv") as f:
        curve = list(csv.DictReader(f))
    plan = json.loads((tmp_path / "plan.json").read_text())
    # 48 training examples in batches of 8: 6 steps per epoch, a validation every 3 steps.
    assert [int(r["step"]) for r in curve] == [3, 6, 9, 12]
    assert [int(r["samples"]) for r in curve] == [24, 48, 72, 96]
    assert [int(r["flops"]) for r in curve] == [int(r["samples"]) * plan["flops_per_sample"] for r in curve]
    times = [float(r["train_time_s"]) for r in curve]
    assert 0 < times[0] < times[1] < times[2] < times[3] <= metrics["train_time_s"]
    [logged] = list(tmp_path.glob("csv/*/metrics.csv"))
    with open(logged) as f:
        val = [(int(r["step"]), float(r["val/acc"])) for r in csv.DictReader(f) if r.get("val/acc")]
    # The logger's validation rows during fit (the last one is the best checkpoint's re-validation after fit);
    # Lightning logs a validation at the index of the step before it, the curve at the optimizer steps done.
    assert [(int(r["step"]) - 1, float(r["val/acc"])) for r in curve] == val[:4]


@pytest.mark.parametrize("trainer,points,expected", [
    ({"max_epochs": 1, "val_check_interval": None}, 4, 0.25),
    ({"max_epochs": 2, "val_check_interval": None}, 4, 0.5),
    ({"max_epochs": 3, "val_check_interval": None}, 4, 0.5),  # 2 per epoch: at least 4 in all
    ({"max_epochs": 4, "val_check_interval": None}, 4, None),  # once per epoch is enough
    ({"max_epochs": 1, "val_check_interval": 10}, 4, None),  # the user's schedule wins
    ({"max_epochs": 1, "val_check_interval": None}, None, None),
])
def test_validation_schedule_gives_short_jobs_several_points(trainer, points, expected):
    from ftlab.training.validation_schedule import validation_interval

    assert validation_interval(trainer, points) == expected


@pytest.mark.slow
def test_a_one_epoch_job_gets_several_curve_points(tiny_model_dir, tiny_csv, tmp_path):
    import csv

    train(compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, "trainer.max_epochs=1", "curve_points=3")))
    with open(tmp_path / "curve.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [2, 4, 6]  # 6 batches, every third of the epoch


def test_extra_curve_points_keep_early_stopping_patience_in_epochs():
    from lightning.pytorch.callbacks import EarlyStopping

    from ftlab.training.validation_schedule import keep_patience_in_epochs

    stop = EarlyStopping(monitor="val/acc", patience=3)
    keep_patience_in_epochs([stop], per_epoch=4)
    assert stop.patience == 12


@pytest.mark.slow
def test_the_last_validation_of_an_epoch_falls_on_its_last_batch(tiny_model_dir, tiny_csv, tmp_path):
    import csv

    # 48 examples in batches of 4: 12 batches per epoch, 5 validations per epoch asked: every ceil(12 / 5) = 3
    # batches, in each of the 2 epochs (the spacing is restored after the forced one at an epoch's end).
    train(compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, "trainer.max_epochs=2", "curve_points=10",
                                 "batch_size=4")))
    with open(tmp_path / "curve.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [3, 6, 9, 12, 15, 18, 21, 24]


@pytest.mark.slow
def test_without_the_spread_lightning_would_skip_the_epochs_last_steps(tiny_model_dir, tiny_csv, tmp_path):
    import csv

    # 6 batches, 4 validations asked: Lightning's own int(6 / 4) = 1 would validate after every batch; 5 batches
    # (40 training examples) and 2 per epoch: int(5 / 2) = 2 gives 2 and 4, never the 5th. ftlab: 3 and 5.
    train(compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, "trainer.max_epochs=1", "curve_points=2",
                                 "batch_size=8", "data.max_train_samples=40")))
    with open(tmp_path / "curve.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [3, 5]
