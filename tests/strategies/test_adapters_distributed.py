"""Adapters through every path the freezing strategies take: 2-process DDP against one process, FSDP and DeepSpeed
against DDP, interrupt-and-resume, and a sweep where LoRA and IA3 compete with full and partial."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import make_tiny_csv, tiny_overrides
from tests.test_run_py import run_cli
from tests.training.test_sharding import ON_CPU

pytestmark = pytest.mark.slow

# lr 1e-2 with layer-wise decay: each block's adapter weights get their own LR group.
LORA = ["strategy=lora", "strategy.r=4", "strategy.dropout=0", "trainer.max_epochs=2", "lr=1e-2", "layer_decay=0.8",
        "callbacks.early_stopping=null", "data.val_size=0.1", "data.test_size=0.1"]


@pytest.fixture(scope="module")
def no_dropout_bert(tiny_model_dir, tmp_path_factory):
    """The tiny BERT without dropout: runs that see the same batches must compute the same thing, whatever the RNG
    streams of their processes."""
    directory = tmp_path_factory.mktemp("bert-no-dropout")
    for file in tiny_model_dir.iterdir():
        (directory / file.name).write_bytes(file.read_bytes())
    config = json.loads((directory / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 20 per class, 2 each to validation and test: 48 training rows, 3 batches of 16 (or 2 ranks x 8) per epoch.
    return make_tiny_csv(tmp_path_factory.mktemp("lora-data") / "train.csv", per_class=20)


def run_job(model_dir, csv_path, job, *extra, returncode: int = 0):
    proc = run_cli(*tiny_overrides(model_dir, csv_path, job), *LORA, *extra, f"hydra.run.dir={job}")
    assert proc.returncode == returncode, proc.stderr[-3000:]
    return job


@pytest.fixture(scope="module")
def ddp_job(no_dropout_bert, data, tmp_path_factory):
    return run_job(no_dropout_bert, data, tmp_path_factory.mktemp("lora-ddp") / "ddp", *ON_CPU["ddp"])


def metrics_of(job):
    return json.loads((job / "metrics.json").read_text())


def test_two_process_ddp_lora_equals_one_process(ddp_job, no_dropout_bert, data, tmp_path):
    # One process with batch 16 sees each step's 16 examples that the 2 ranks see as 8 + 8.
    single = run_job(no_dropout_bert, data, tmp_path / "single", "batch_size=16")
    ddp, one = metrics_of(ddp_job), metrics_of(single)
    assert (ddp_job / "train_ddp_process_1.log").exists()
    assert ddp["global_step"] == one["global_step"] == 6
    for key in ("val/loss", "test/loss", "test/acc", "val/acc"):
        assert ddp[key] == pytest.approx(one[key], abs=1e-5), key
    a, b = (load_file(j / "adapter" / "adapter_model.safetensors") for j in (ddp_job, single))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["fsdp", "deepspeed"])
def test_sharded_lora_equals_ddp(name, ddp_job, no_dropout_bert, data, tmp_path):
    if name == "deepspeed":
        pytest.importorskip("deepspeed", reason="the optional extra: pip install -e '.[deepspeed]'")
    job = run_job(no_dropout_bert, data, tmp_path / name, *ON_CPU[name])
    sharded, ddp = metrics_of(job), metrics_of(ddp_job)
    assert sharded["global_step"] == ddp["global_step"] == 6
    for key in ("val/loss", "test/loss", "test/acc"):
        assert sharded[key] == pytest.approx(ddp[key], abs=1e-5), key
    # Whole exports (gathered from the shards): the adapter alone and the merged model equal DDP's.
    for file in ("adapter/adapter_model.safetensors", "model/model.safetensors"):
        a, b = (load_file(j / file) for j in (job, ddp_job))
        assert a.keys() == b.keys(), file
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0)


def test_interrupted_lora_job_resumes_to_the_same_result(no_dropout_bert, data, tmp_path):
    extra = ["strategy.dropout=0.1", "trainer.deterministic=true"]  # with dropout: the RNG state must resume too
    whole = run_job(no_dropout_bert, data, tmp_path / "whole", *extra)
    cut = run_job(no_dropout_bert, data, tmp_path / "cut", *extra, "+callbacks.killer._target_=tests.helpers.SignalAt",
                  "+callbacks.killer.step=8", returncode=1)
    assert (cut / "checkpoints" / "last.ckpt").exists() and not (cut / "metrics.json").exists()
    proc = run_cli(f"resume={cut}", f"hydra.run.dir={tmp_path / 'resume-invocation'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = metrics_of(whole), metrics_of(cut)
    assert b["resumed_from"] and a["global_step"] == b["global_step"] == 12
    for key in ("val/loss", "val/acc", "test/loss", "test/acc"):
        assert a[key] == b[key], key  # exactly
    wa, wb = (load_file(j / "adapter" / "adapter_model.safetensors") for j in (whole, cut))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_sweep_puts_adapters_beside_freezing_in_one_report(tiny_model_dir, tiny_csv, tmp_path):
    sweep = tmp_path / "sweep"
    base = [o for o in tiny_overrides(tiny_model_dir, tiny_csv, tmp_path) if not o.startswith("output_dir")]
    proc = run_cli("-m", "strategy=full,partial,lora,ia3", f"hydra.sweep.dir={sweep}", *base, "debug=smoke",
                   "logger=csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["strategy"] for r in rows] == ["full", "partial", "lora", "ia3"]
    assert {r["status"] for r in rows} == {"completed"}
    pct = {r["strategy"]: float(r["trainable_pct"]) for r in rows}
    assert pct["ia3"] < pct["lora"] < pct["full"] == 100.0
    summary = (sweep / "summary.md").read_text()
    assert "strategy=lora" in summary and "strategy=ia3" in summary
    for row in rows:
        plan = json.loads((sweep / row["job"] / "plan.json").read_text())
        assert plan["params"]["trainable_fraction"] * 100 == pytest.approx(pct[row["strategy"]])
        assert bool(plan["params"]["adapter"]) == (row["strategy"] in ("lora", "ia3"))
        assert (sweep / row["job"] / "adapter").exists() == (row["strategy"] in ("lora", "ia3"))
    labels = {json.loads((sweep / r["job"] / "metrics.json").read_text())["strategy_label"] for r in rows}
    assert labels == {"full", "partial(k=1)", "lora(r=8)", "ia3"}
