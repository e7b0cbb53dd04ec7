"""README claims about training dynamics, each checked against an independent observable:

- gradual unfreezing under DDP (2 CPU processes) trains exactly like one process with the same global batch, and
  the stage gating holds on every rank (waiting parameters bit-identical until their stage);
- gradient accumulation (batch 4 x 4) trains like batch 16;
- early stopping stops at the epoch its patience dictates, and ``best.ckpt`` / ``metrics.json`` hold the best epoch.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from ftlab.train import train
from tests.helpers import compose, make_tiny_bert, tiny_overrides
from tests.test_run_py import run_cli

# A key bias gets an exactly-zero gradient in exact arithmetic (softmax ignores a shift shared by all keys), so
# what it receives is rounding noise, which Adam normalises to steps of size ~lr: it differs between any two
# summation orders (one batch of 16 vs four of 4, one process vs two) while having no effect on the outputs.
NOISE_ONLY = "attention.self.key.bias"


@pytest.fixture(scope="module")
def no_dropout_bert(tmp_path_factory):
    """The tiny BERT with dropout off: runs that split a batch differently (DDP ranks, accumulation) draw different
    dropout masks, so only a dropout-free model can train bit-for-bit alike."""
    directory = make_tiny_bert(tmp_path_factory.mktemp("tiny-bert-no-dropout"))
    config = json.loads((directory / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def assert_same_weights(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if not key.endswith(NOISE_ONLY):
            torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)


# ---------------------------------------------------------------------------------------------------------------
# 1. Gradual unfreezing on 2 DDP processes == 1 process


def unit_of(name: str) -> str:
    """The unfreezing unit of a tiny-BERT parameter name (2 blocks): embeddings, block0, block1 or head."""
    if name.startswith("bert.embeddings."):
        return "embeddings"
    if name.startswith("bert.encoder.layer."):
        return "block" + name.split(".")[3]
    return "head"  # bert.pooler + classifier


# ULMFiT order, written out independently of ftlab.strategies: the head, then the top block, ..., the embeddings.
STAGE = {"head": 0, "block1": 1, "block0": 2, "embeddings": 3}


class UnfreezingProbe(L.Callback):
    """After every optimizer step, records which units have moved away from their values at the start of training;
    at the end, a digest of all weights. One JSON file per rank: ``<prefix>.rank<r>.json``."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def on_train_start(self, trainer, pl_module):
        self.start = {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}
        self.moved: list = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        moved = {unit_of(n) for n, p in pl_module.model.named_parameters() if not torch.equal(p, self.start[n])}
        self.moved.append([trainer.global_step, sorted(moved)])

    def on_train_end(self, trainer, pl_module):
        digest = hashlib.sha256()
        for _, p in sorted(pl_module.model.named_parameters()):
            digest.update(p.detach().cpu().numpy().tobytes())
        Path(f"{self.prefix}.rank{trainer.global_rank}.json").write_text(
            json.dumps({"moved": self.moved, "digest": digest.hexdigest()}))


EVERY = 2  # optimizer steps per unfreezing stage: 4 stages within the first 8 of 12 steps
UNFREEZE = ["strategy=gradual_unfreezing", "strategy.unit=step", f"strategy.every={EVERY}", "trainer.max_epochs=2",
            "lr=3e-3", "scheduler.warmup_ratio=0",  # no warmup: LR > 0 from step 0, so only the gating holds weights
            "callbacks.early_stopping=null", "callbacks.model_checkpoint=null",  # evaluate and export the last weights
            "eval_batch_size=8"]


def expected_moved(steps_done: int) -> list[str]:
    """Units that have had a non-zero LR in optimizer steps 0 .. steps_done - 1."""
    return sorted(unit for unit, stage in STAGE.items() if stage * EVERY <= steps_done - 1)


def check_probe(prefix: Path) -> str:
    record = json.loads(Path(f"{prefix}.json").read_text())
    assert [step for step, _ in record["moved"]] == list(range(1, 13))  # 2 epochs of 6 optimizer steps
    for steps_done, moved in record["moved"]:
        # A unit waiting for its stage is bit-identical to its start; each moves from its first step on.
        assert moved == expected_moved(steps_done), f"after {steps_done} steps: moved {moved}"
    return record["digest"]


@pytest.mark.slow
def test_gradual_unfreezing_on_two_ddp_processes_equals_one_process(no_dropout_bert, tiny_csv, tmp_path):
    # Same global batch: 1 process x 8 examples vs 2 ranks x 4. The training sampler deals one seeded permutation
    # across ranks (rank r takes positions r, r+2, ...), so each optimizer step sees the same 8 examples, and DDP's
    # gradient average of two per-rank mean losses is the mean loss over the 8.
    one, two = tmp_path / "one", tmp_path / "two"
    probe = "+callbacks.probe._target_=tests.test_claims.UnfreezingProbe"
    train(compose(tiny_overrides(no_dropout_bert, tiny_csv, one, *UNFREEZE, "batch_size=8",
                                 probe, f"+callbacks.probe.prefix={one}/probe")))
    proc = run_cli(*tiny_overrides(no_dropout_bert, tiny_csv, two, *UNFREEZE, "batch_size=4"), "trainer=ddp_cpu",
                   probe, f"+callbacks.probe.prefix={two}/probe", f"hydra.run.dir={two}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (two / "train_ddp_process_1.log").exists()  # rank 1 ran

    # Stage gating held at every step, in the single process and on both ranks, and the ranks never diverged
    # (waiting parameters stay in DDP's buckets, so their gradients are averaged like every other).
    check_probe(one / "probe.rank0")
    rank0, rank1 = check_probe(two / "probe.rank0"), check_probe(two / "probe.rank1")
    assert rank0 == rank1

    a, b = (json.loads((job / "metrics.json").read_text()) for job in (one, two))
    assert a["global_step"] == b["global_step"] == 12
    # Observed difference ~1e-7 (different reduction order and thread count); one optimizer step at lr 3e-3 moves
    # the losses by ~1e-2, a gating or sync error by far more.
    for key in ("val/loss", "test/loss", "val/acc", "test/acc"):
        assert b[key] == pytest.approx(a[key], abs=1e-5), key
    assert b["test/confusion_matrix"] == a["test/confusion_matrix"]
    assert_same_weights(load_file(one / "model" / "model.safetensors"),
                        load_file(two / "model" / "model.safetensors"), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# 2. Gradient accumulation: 4 batches of 4 == 1 batch of 16


OPTIMIZERS = {
    "adamw": ["lr=3e-3"],  # the default optimizer (and gradient clipping at norm 1)
    # Plain SGD without clipping: its update is proportional to the gradient, so a wrongly scaled accumulated loss
    # (summed instead of averaged over the 4 batches) shows; Adam's update is nearly invariant to that scale.
    "sgd": ["optimizer._target_=torch.optim.SGD", "~optimizer.betas", "~optimizer.eps", "+optimizer.momentum=0.9",
            "lr=0.1", "trainer.gradient_clip_val=null"],
}


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_accumulating_four_batches_of_four_equals_batches_of_sixteen(no_dropout_bert, tiny_csv, tmp_path, optimizer):
    # 48 training examples: 3 optimizer steps per epoch either way (12 batches of 4, accumulated by 4), so the
    # linear schedule (total steps, warmup) is the same; Lightning divides each accumulated loss by 4, so the
    # summed gradient is the mean over the 16 examples. Same evaluation batch size, so evaluation is identical too.
    common = ["trainer.max_epochs=3", "callbacks.early_stopping=null", "callbacks.model_checkpoint=null",
              "eval_batch_size=16", *OPTIMIZERS[optimizer]]
    runs = {
        "big": ["batch_size=16"],
        "accumulated": ["batch_size=4", "trainer.accumulate_grad_batches=4"],
        "small": ["batch_size=4"],  # control: the same batches without accumulation train differently
    }
    metrics, weights = {}, {}
    for name, extra in runs.items():
        metrics[name] = train(compose(tiny_overrides(no_dropout_bert, tiny_csv, tmp_path / name, *common, *extra)))
        weights[name] = load_file(tmp_path / name / "model" / "model.safetensors")

    big, accumulated = metrics["big"], metrics["accumulated"]
    assert big["global_step"] == accumulated["global_step"] == 9 and metrics["small"]["global_step"] == 36
    # Tolerance 1e-5: the runs differ only in the order of summing per-example gradients (observed ~1e-7 on
    # weights and losses); a single extra or missing optimizer step, a schedule counted in batches instead of
    # optimizer steps, or (SGD) a loss scaled by 4 moves weights by >= ~1e-3 and losses by ~1e-2.
    for key in ("val/loss", "test/loss", "val/acc", "test/acc"):
        assert accumulated[key] == pytest.approx(big[key], abs=1e-5), key
    assert accumulated["test/confusion_matrix"] == big["test/confusion_matrix"]
    assert_same_weights(accumulated_weights := weights["accumulated"], weights["big"], atol=1e-5)
    # The control shows the tolerance discriminates: 36 steps of 4 land far from 9 steps of 16.
    with pytest.raises(AssertionError):
        assert_same_weights(weights["small"], weights["big"], atol=1e-5)
    if optimizer == "sgd":  # no Adam normalising rounding noise: every weight, key biases included, agrees
        for key, tensor in accumulated_weights.items():
            torch.testing.assert_close(tensor, weights["big"][key], atol=1e-5, rtol=0, msg=key)


# ---------------------------------------------------------------------------------------------------------------
# 3. Early stopping: stops where its patience says; best.ckpt and metrics.json hold the best epoch


def validation_rows(job: Path) -> list[dict]:
    """The CSV logger's validation rows, in order: one per trained epoch, then the post-fit validate of best.ckpt
    (the job's final summary row, which has no epoch, is left out)."""
    with open(job / "csv" / "version_0" / "metrics.csv", newline="") as f:
        return [row for row in csv.DictReader(f) if row.get("val/loss") and row.get("epoch")]


def expected_stop(values: list[float], patience: int, mode: str) -> tuple[int, int]:
    """(stop epoch, best epoch) by EarlyStopping's rule with min_delta 0: an epoch improves only if strictly
    better than the best so far; training stops after the epoch that makes ``patience`` non-improving in a row.
    The best epoch is the first one with the best value (ModelCheckpoint replaces only on strict improvement)."""
    better = (lambda a, b: a < b) if mode == "min" else (lambda a, b: a > b)
    best, wait = 0, 0
    for epoch, value in enumerate(values):
        if epoch and not better(value, values[best]):
            wait += 1
            if wait >= patience:
                return epoch, best
        elif epoch:
            best, wait = epoch, 0
    return len(values) - 1, best


PATIENCE, MAX_EPOCHS, STEPS_PER_EPOCH = 2, 15, 6  # 48 training examples, batch 8


@pytest.mark.slow
@pytest.mark.parametrize("monitor,mode", [("val/loss", "min"), ("val/acc", "max")])
def test_early_stopping_stops_at_patience_and_keeps_the_best_epoch(tiny_model_dir, tiny_csv, tmp_path, monitor,
                                                                    mode):
    metrics = train(compose(tiny_overrides(
        tiny_model_dir, tiny_csv, tmp_path, "logger=csv", f"trainer.max_epochs={MAX_EPOCHS}", "lr=3e-3",
        f"monitor={monitor}", f"monitor_mode={mode}", f"callbacks.early_stopping.patience={PATIENCE}")))

    rows = validation_rows(tmp_path)
    trained = rows[:-1]  # the last row is trainer.validate(best.ckpt) after fit
    assert [int(row["epoch"]) for row in rows] == list(range(len(rows)))
    values = [float(row[monitor]) for row in trained]
    stop, best = expected_stop(values, PATIENCE, mode)
    # The claim is only exercised if training stopped early and the last epoch is not the best.
    assert stop < MAX_EPOCHS - 1 and best < stop, values
    assert len(trained) == stop + 1, f"trained {len(trained)} epochs, patience {PATIENCE} says {stop + 1}: {values}"
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["global_step"] == metrics["global_step"] == (stop + 1) * STEPS_PER_EPOCH

    # best.ckpt is the best epoch's weights, and metrics.json's validation numbers are that epoch's, not the last.
    checkpoint = torch.load(tmp_path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (best, (best + 1) * STEPS_PER_EPOCH)
    for key in ("val/loss", "val/acc", "val/f1"):
        assert on_disk[key] == pytest.approx(float(trained[best][key]), rel=1e-6), key
        assert float(rows[-1][key]) == pytest.approx(on_disk[key], rel=1e-6), key
    assert on_disk[monitor] != pytest.approx(values[-1], rel=1e-6)  # not the last epoch's
    exported = load_file(tmp_path / "model" / "model.safetensors")
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}
    assert exported.keys() <= state.keys() and all(torch.equal(exported[k], state[k]) for k in exported)
