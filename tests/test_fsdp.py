"""FSDP: which modules become units, frozen units hold no gradient, and 2 CPU processes train exactly like DDP."""

from __future__ import annotations

import json
import socket

import pytest
import torch
from safetensors.torch import load_file

from ftlab.distributed import fsdp_units, shard_model
from ftlab.models import load_model, param_name
from ftlab.strategies import apply_strategy
from tests.helpers import make_tiny_csv, make_tiny_llama, tiny_overrides
from tests.test_cli import run_cli

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
    selection = apply_strategy(model, PARTIAL)
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


FSDP_ON_CPU = ["trainer=fsdp", "trainer.accelerator=cpu", "trainer.precision=32-true",
               "trainer.strategy._target_=tests.cpu_fsdp.CPUFSDPStrategy"]


@pytest.mark.slow
def test_fsdp_on_two_cpu_processes_trains_exactly_like_ddp(tiny_model_dir, tmp_path):
    csv = make_tiny_csv(tmp_path / "odd.csv", per_class=21)
    # Layer-wise LR decay puts each block in its own optimizer group, found by (FSDP-wrapped) parameter names;
    # gradient_clip_val=1.0 (the default) takes FSDP's own norm clipping.
    args = ["strategy=partial", "data.test_size=0.15", "trainer.max_epochs=2", "lr=3e-3", "+optimizer.layer_decay=0.8"]
    jobs = {}
    for name, trainer in [("fsdp", FSDP_ON_CPU), ("ddp", ["trainer=ddp_cpu"])]:
        jobs[name] = job = tmp_path / name
        proc = run_cli(*tiny_overrides(tiny_model_dir, csv, job), *trainer, *args, f"hydra.run.dir={job}")
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert (jobs["fsdp"] / "train_ddp_process_1.log").exists()

    fsdp, ddp = (json.loads((jobs[n] / "metrics.json").read_text()) for n in ("fsdp", "ddp"))
    assert fsdp["global_step"] == ddp["global_step"] == 6
    for key in ("val/loss", "test/loss", "test/acc"):
        assert fsdp[key] == pytest.approx(ddp[key], abs=1e-5), key
    assert fsdp["test/confusion_matrix"] == ddp["test/confusion_matrix"]

    # The exported model is whole (gathered from the shards) and equals DDP's; frozen weights are the base's.
    base = load_file(tiny_model_dir / "model.safetensors")
    tuned, reference = (load_file(jobs[n] / "model" / "model.safetensors") for n in ("fsdp", "ddp"))
    assert tuned.keys() == reference.keys()
    for key, tensor in tuned.items():
        # A key bias has an exactly-zero gradient (softmax ignores a shift shared by all keys): Adam normalises
        # rounding noise there, which differs between the two reduction orders.
        if not key.endswith("attention.self.key.bias"):
            torch.testing.assert_close(tensor, reference[key], atol=1e-5, rtol=0)
    for name, tensor in base.items():
        key = name if name in tuned else f"bert.{name}"
        frozen = not key.startswith(("bert.encoder.layer.1.", "bert.pooler."))
        assert torch.equal(tuned[key], tensor) == frozen, key
