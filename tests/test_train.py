"""In-process jobs on a tiny model: outputs, exported model, W&B offline records, failure handling."""

from __future__ import annotations

import json

import pytest
import torch

from ftlab.train import train
from ftlab.training.module import FineTuneModule
from tests.helpers import compose, finished_wandb_records, tiny_overrides

LEARN = ["trainer.max_epochs=8", "lr=3e-3", "callbacks.early_stopping=null"]


@pytest.fixture(scope="module")
def job(tiny_model_dir, tiny_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("job")
    cfg = compose(tiny_overrides(tiny_model_dir, tiny_csv, out, *LEARN, "logger=wandb"))
    return out, train(cfg)


@pytest.mark.slow
def test_job_learns_and_writes_metrics(job):
    out, metrics = job
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("val/acc", "val/f1", "val/precision", "val/recall", "val/loss",
                "test/acc", "test/f1", "test/precision", "test/recall", "test/loss"):
        assert on_disk[key] == pytest.approx(float(metrics[key])), key
    assert on_disk["val/acc"] >= 0.8 and on_disk["test/acc"] >= 0.6  # chance is 1/3
    assert on_disk["params/trainable"] == on_disk["params/total"] > 0
    assert on_disk["train_time_s"] > 0 and on_disk["train_samples_per_s"] > 0
    assert on_disk["global_step"] == 8 * 6  # 48 training examples, batch 8
    assert on_disk["data/split_sizes"] == {"train": 48, "validation": 6, "test": 6}
    assert on_disk["data/test_examples"] == 6  # the whole test split scored
    confusion = on_disk["test/confusion_matrix"]
    assert confusion["labels"] == ["food", "sport", "tech"]
    matrix = torch.tensor(confusion["matrix"])
    assert matrix.sum() == 6 and matrix.trace() / 6 == pytest.approx(on_disk["test/acc"])


@pytest.mark.slow
def test_exported_model_reloads_and_predicts_like_the_module(job):
    from transformers import pipeline

    out, metrics = job
    classify = pipeline("text-classification", model=str(out / "model"), device="cpu")
    module = FineTuneModule.load_from_checkpoint(metrics["best_checkpoint"], map_location="cpu").eval()
    texts = ["goal team coach league", "pasta soup cheese bread", "laptop chip server cloud"]
    batch = module.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ids = module(**batch).logits.argmax(-1).tolist()
    assert [p["label"] for p in classify(texts)] == [module.model.config.id2label[i] for i in ids]
    assert module.model.config.id2label == {0: "food", 1: "sport", 2: "tech"}


@pytest.mark.slow
def test_checkpoint_reloads_with_same_freezing(tiny_model_dir, tiny_csv, tmp_path):
    cfg = compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, "debug=smoke", "strategy=partial"))
    metrics = train(cfg)
    module = FineTuneModule.load_from_checkpoint(metrics["best_checkpoint"], map_location="cpu")
    assert module.hparams.strategy == {"name": "partial", "trainable_layers": 1, "train_embeddings": False,
                                       "train_head": True, "frozen_dropout": False,
                                       "lr_grid": [1e-4, 2e-4, 4e-4]}
    assert metrics["params/trainable"] == module.param_counts["params/trainable"] == 6789 + 1056 + 99
    assert metrics["global_step"] == 2
    # a single job keeps best.ckpt (reloaded above) and drops last.ckpt, the optimizer state, once it succeeded
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.ckpt"]
    assert metrics["keep_checkpoints"] == "best"
    disk = json.loads((tmp_path / "plan.json").read_text())["disk_bytes"]
    weights = json.loads((tmp_path / "plan.json").read_text())["memory_bytes"]["weights"]
    assert disk["files"]["model/"] == disk["files"]["best.ckpt"] == weights and disk["after_success"] == 2 * weights


@pytest.mark.slow
def test_keep_checkpoints_none_leaves_the_model_as_the_result(tiny_model_dir, tiny_csv, tmp_path):
    metrics = train(compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, "debug=smoke",
                                           "keep_checkpoints=none")))
    assert not (tmp_path / "checkpoints").exists() and (tmp_path / "model" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "metrics.json").read_text())["keep_checkpoints"] == metrics["keep_checkpoints"]
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["disk_bytes"]["after_success"] == plan["memory_bytes"]["weights"]  # model/ alone
    on_disk = (tmp_path / "model" / "model.safetensors").stat().st_size
    assert 0 <= on_disk - plan["memory_bytes"]["weights"] < 8192  # the estimate is the file, but for its header


def test_a_test_metric_on_part_of_the_test_split_says_how_many_examples(tiny_model_dir, tiny_csv, tmp_path):
    """debug=smoke scores one test batch: metrics.json and the model card say 4 of the 6 test examples."""
    train(compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, "debug=smoke", "eval_batch_size=4")))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (metrics["data/test_examples"], metrics["data/split_sizes"]["test"]) == (4, 6)
    assert ("`test/` rows were computed on 4 of the 6 test examples (trainer.limit_test_batches)."
            in (tmp_path / "model" / "README.md").read_text())


def wandb_run_file(out):
    files = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    return files[0]


@pytest.mark.slow
def test_wandb_offline_run_holds_config_and_metrics(job):
    out, metrics = job
    records = finished_wandb_records(wandb_run_file(out))
    history = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                history.setdefault(item.key or "/".join(item.nested_key), []).append(json.loads(item.value_json))
    assert len(history["train/loss"]) >= 4
    assert history["val/acc"][-1] == pytest.approx(metrics["val/acc"])
    assert history["test/acc"][-1] == pytest.approx(metrics["test/acc"])
    assert history["params/trainable"][-1] == metrics["params/trainable"]
    config = {}
    for record in records:
        if record.WhichOneof("record_type") == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
    assert config["lr"] == 3e-3 and config["strategy"] == {"name": "full", "frozen_dropout": True,
                                                           "lr_grid": [2e-4, 4e-4, 8e-4]}
    assert config["plan"]["params"]["trainable"] == metrics["params/trainable"]  # the cost plan is logged too
    exits = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert len(exits) == 1 and exits[0].exit_code == 0


@pytest.mark.slow
def test_failed_job_still_finishes_its_wandb_run(tiny_model_dir, tiny_csv, tmp_path, monkeypatch, caplog):
    import logging

    import wandb

    def explode(self, batch, batch_idx):
        raise RuntimeError("boom")

    monkeypatch.setattr(FineTuneModule, "training_step", explode)
    caplog.set_level(logging.INFO, logger="ftlab")
    cfg = compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, "debug=smoke", "logger=wandb"))
    with pytest.raises(RuntimeError, match="boom"):
        train(cfg)
    assert wandb.run is None
    records = finished_wandb_records(wandb_run_file(tmp_path))
    exits = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert len(exits) == 1 and exits[0].exit_code == 1
    run_dir = wandb_run_file(tmp_path).parent  # W&B's own summary is silenced; one line says where the run is
    assert f"W&B run in {run_dir} (offline; upload with: wandb sync {run_dir})" in [
        r.getMessage() for r in caplog.records if r.levelno == logging.INFO]


@pytest.mark.slow
def test_optimizer_lr_set_directly_is_what_trains_and_what_is_reported(tiny_model_dir, tiny_csv, tmp_path):
    """`optimizer.lr=1e-3` (the top-level lr left at its default) trains at 1e-3, and every record says 1e-3."""
    cfg = compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, "debug=smoke", "logger=wandb",
                                 "scheduler=constant", "optimizer.lr=1e-3"))
    assert cfg.lr != 1e-3
    metrics = train(cfg)
    records = finished_wandb_records(wandb_run_file(tmp_path))
    trained = [json.loads(item.value_json) for r in records if r.WhichOneof("record_type") == "history"
               for item in r.history.item if (item.key or "/".join(item.nested_key)) == "lr-AdamW/decay"]
    assert trained and all(value == pytest.approx(1e-3) for value in trained)
    config = {}
    for record in records:
        if record.WhichOneof("record_type") == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
    assert config["lr"] == config["optimizer"]["lr"] == 1e-3
    assert metrics["lr"] == json.loads((tmp_path / "metrics.json").read_text())["lr"] == 1e-3
    assert "- **Hyperparameters:** lr 0.001," in (tmp_path / "model" / "README.md").read_text()
