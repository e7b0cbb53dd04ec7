"""FSDP units and gradients; FSDP and DeepSpeed ZeRO-2 on 2 CPU processes train exactly like DDP; a SIGTERM to
every rank of a DDP or FSDP run saves a checkpoint from which the resumed run ends as the uninterrupted one."""

from __future__ import annotations

import json
import socket

import pytest
import torch
from safetensors.torch import load_file

from ftlab.model.anatomy import param_name
from ftlab.model.loading import load_model
from ftlab.strategies import apply_strategy
from ftlab.training.distributed import fsdp_units, shard_model
from tests.helpers import make_tiny_csv, make_tiny_llama, tiny_overrides
from tests.test_run_py import run_cli

PARTIAL = {"name": "partial", "trainable_layers": 1, "train_embeddings": False, "train_head": True}


def unit_names(model) -> list[str]:
    units = fsdp_units(model)
    return [name for name, module in model.named_modules() if id(module) in units]


def test_units_are_blocks_plus_frozen_subtrees_outside_them(tiny_model_dir):
    model = load_model({"pretrained_model_name_or_path": str(tiny_model_dir)}, ["a", "b"])
    assert unit_names(model) == ["bert.encoder.layer.0", "bert.encoder.layer.1"]  # full: nothing frozen
    apply_strategy(model, PARTIAL)
    # The frozen embeddings get their own (gradient-free) unit; the trainable pooler and classifier stay in the root.
    assert unit_names(model) == ["bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1"]


def test_lora_modules_are_units_of_their_own_inside_the_blocks(tiny_model_dir):
    model = load_model({"pretrained_model_name_or_path": str(tiny_model_dir)}, ["a", "b"])
    model, _ = apply_strategy(model, {"name": "lora", "r": 2, "layers": 1, "target_modules": ["query"]})
    # The called Linear layers (never their ModuleDict containers); the frozen original of the head its own unit.
    assert unit_names(model) == [
        "base_model.model.bert.embeddings", "base_model.model.bert.encoder.layer.0",
        "base_model.model.bert.encoder.layer.1",
        "base_model.model.bert.encoder.layer.1.attention.self.query.lora_A.default",
        "base_model.model.bert.encoder.layer.1.attention.self.query.lora_B.default",
        "base_model.model.bert.pooler.original_module", "base_model.model.classifier.original_module"]


@pytest.mark.parametrize("tie", [True, False])
def test_a_frozen_embedding_tied_to_the_head_stays_in_the_root_unit(tmp_path, tie):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(make_tiny_llama(tmp_path / "llama", tie=tie))
    apply_strategy(model, PARTIAL)
    blocks = ["model.layers.0", "model.layers.1", "model.layers.2"]
    # Untied, the frozen input embedding is a unit of its own; tied, FSDP needs it in the unit that holds lm_head.
    assert unit_names(model) == (blocks if tie else ["model.embed_tokens"] + blocks)


@pytest.fixture
def one_process_group():
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_frozen_units_hold_no_gradient_and_names_survive_wrapping(tiny_model_dir, one_process_group):
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import enable_wrap

    model = load_model({"pretrained_model_name_or_path": str(tiny_model_dir)}, ["a", "b"])
    _, selection = apply_strategy(model, PARTIAL)
    names = [n for n, _ in model.named_parameters()]
    with enable_wrap(wrapper_cls=FullyShardedDataParallel, device_id=torch.device("cpu"), use_orig_params=True):
        wrapped = shard_model(model, FSDPStrategy(use_orig_params=True))
    assert [param_name(n) for n, _ in wrapped.named_parameters()] == names
    batch = {"input_ids": torch.tensor([[2, 8, 9, 3]]), "labels": torch.tensor([1])}
    wrapped(**batch).loss.backward()

    units = {param_name(name): unit for name, unit in wrapped.named_modules()
             if isinstance(unit, FullyShardedDataParallel)}
    assert sorted(units) == ["", "bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1"]
    has_grad = {name: any(p.grad is not None for p in unit.params) for name, unit in units.items()}
    assert has_grad == {"": True, "bert.embeddings": False, "bert.encoder.layer.0": False,
                        "bert.encoder.layer.1": True}
    trained = {param_name(n) for n, p in wrapped.named_parameters() if p.grad is not None}
    assert trained == set(selection.trainable)


ON_CPU = {
    "ddp": ["trainer=ddp_cpu"],
    "fsdp": ["trainer=fsdp", "trainer.accelerator=cpu", "trainer.precision=32-true",
             "trainer.strategy._target_=tests.cpu_strategies.CPUFSDPStrategy"],
    "deepspeed": ["trainer=deepspeed", "trainer.accelerator=cpu", "trainer.precision=32-true",
                  "trainer.strategy={_target_: tests.cpu_strategies.CPUDeepSpeedStrategy, stage: 2}"],
}


def run_job(name: str, model_dir, csv, out_dir, *extra: str, returncode: int = 0):
    # Layer-wise LR decay puts each block in its own optimizer group, found by (FSDP-wrapped) parameter names;
    # gradient_clip_val=1.0 (the default) takes FSDP's own norm clipping, DeepSpeed's its own.
    args = ["strategy=partial", "data.test_size=0.15", "trainer.max_epochs=2", "lr=3e-3", "layer_decay=0.8",
            "callbacks.early_stopping=null"]
    job = out_dir / name
    proc = run_cli(*tiny_overrides(model_dir, csv, job), *ON_CPU[name], *args, *extra, f"hydra.run.dir={job}")
    assert proc.returncode == returncode, proc.stderr[-3000:]
    assert (job / "train_ddp_process_1.log").exists()  # rank 1 ran
    return job


@pytest.fixture(scope="module")
def ddp_job(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sharding")
    csv = make_tiny_csv(out / "odd.csv", per_class=21)
    return run_job("ddp", tiny_model_dir, csv, out), csv


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fsdp", "deepspeed"])
def test_sharded_training_on_two_cpu_processes_equals_ddp(name, ddp_job, tiny_model_dir, tmp_path):
    if name == "deepspeed":
        pytest.importorskip("deepspeed", reason="the optional extra: pip install -e '.[deepspeed]'")
    reference, csv = ddp_job
    job = run_job(name, tiny_model_dir, csv, tmp_path)

    sharded, ddp = (json.loads((j / "metrics.json").read_text()) for j in (job, reference))
    assert sharded["global_step"] == ddp["global_step"] == 6
    for key in ("val/loss", "test/loss", "test/acc"):
        assert sharded[key] == pytest.approx(ddp[key], abs=1e-5), key
    assert sharded["test/confusion_matrix"] == ddp["test/confusion_matrix"]

    # The exported model is whole (gathered from the shards) and equals DDP's; frozen weights are the base's.
    base = load_file(tiny_model_dir / "model.safetensors")
    tuned, expected = (load_file(j / "model" / "model.safetensors") for j in (job, reference))
    assert tuned.keys() == expected.keys()
    for key, tensor in tuned.items():
        # A key bias has an exactly-zero gradient (softmax ignores a shift shared by all keys): Adam normalises
        # rounding noise there, which differs between the two reduction orders.
        if not key.endswith("attention.self.key.bias"):
            torch.testing.assert_close(tensor, expected[key], atol=1e-5, rtol=0)
    for base_name, tensor in base.items():
        key = base_name if base_name in tuned else f"bert.{base_name}"
        frozen = not key.startswith(("bert.encoder.layer.1.", "bert.pooler."))
        assert torch.equal(tuned[key], tensor) == frozen, key


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddp", "fsdp"])
def test_sigterm_to_every_rank_then_resume_equals_uninterrupted(name, ddp_job, tiny_model_dir, tmp_path):
    reference, csv = ddp_job
    # Each rank signals itself before step 4 of 6 (mid second epoch), as a scheduler signals every task; rank 0
    # would also forward it. All ranks save last.ckpt at the same batch boundary and stop.
    job = run_job(name, tiny_model_dir, csv, tmp_path, "+callbacks.killer._target_=tests.helpers.SignalAt",
                  "+callbacks.killer.step=4", returncode=1)
    assert (job / "checkpoints" / "last.ckpt").exists() and not (job / "metrics.json").exists()
    proc = run_cli(f"resume={job}", f"hydra.run.dir={tmp_path / 'resume-invocation'}")
    assert proc.returncode == 0, proc.stderr[-3000:]

    resumed, whole = (json.loads((j / "metrics.json").read_text()) for j in (job, reference))
    assert resumed["resumed_from"] == str(job / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == whole["global_step"] == 6
    for key in ("val/loss", "test/loss", "test/acc"):
        if name == "ddp":
            assert resumed[key] == whole[key], key  # exactly
        else:
            assert resumed[key] == pytest.approx(whole[key], abs=1e-5), key
