"""Freezing saves real work: no autograd below the lowest trainable block, no state for frozen parameters,
exactly the selected parameters change, gradient checkpointing with a frozen bottom, LR decay and staged LRs."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from ftlab.train import train
from ftlab.training.module import FineTuneModule
from tests.helpers import compose, tiny_overrides

LABELS = ["food", "sport", "tech"]


def make(model_dir, strategy, optimizer=None, scheduler=None, layer_decay=None, **model_kw):
    torch.manual_seed(0)
    return FineTuneModule(model={"pretrained_model_name_or_path": str(model_dir), **model_kw}, strategy=strategy,
                          optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-2, "weight_decay": 0.01,
                                     **(optimizer or {})},
                          scheduler=scheduler or {"name": "none"}, label_names=LABELS, layer_decay=layer_decay)


def batch_of(module):
    texts = ["goal match team score", "bread cheese pasta soup", "chip software laptop code", "coach ball"]
    return dict(module.tokenizer(texts, padding=True, return_tensors="pt"), labels=torch.tensor([1, 0, 2, 1]))


def steps(module, n, optimizer=None, scheduler=None):
    optimizer = optimizer or module.configure_optimizers()
    batch = batch_of(module)
    for _ in range(n):
        module.model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if scheduler is not None:
            scheduler.step()
    return optimizer


@pytest.mark.parametrize("strategy", [
    {"name": "full"}, {"name": "partial", "trainable_layers": 1}, {"name": "partial", "trainable_layers": -1},
    {"name": "head_only"}, {"name": "bitfit"}, {"name": "pattern", "train": ["attention"], "freeze": []},
])
def test_steps_change_exactly_the_trainable_parameters(tiny_model_dir, strategy):
    module = make(tiny_model_dir, strategy)
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    optimizer = steps(module, 3)
    changed = {n for n, p in module.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == module.trainable_names
    # Optimizer state exists only for trainable parameters.
    with_state = {n for n, p in module.model.named_parameters() if p in optimizer.state}
    assert with_state == module.trainable_names


def test_no_autograd_below_the_lowest_trainable_block(tiny_model_dir):
    module = make(tiny_model_dir, {"name": "partial", "trainable_layers": 1})
    bert = module.model.bert
    seen, backward_calls = {}, []
    for name, sub in (("embeddings", bert.embeddings), ("layer.0", bert.encoder.layer[0]),
                      ("layer.1", bert.encoder.layer[1])):
        sub.register_forward_hook(lambda m, i, out, name=name: seen.__setitem__(
            name, (out[0] if isinstance(out, tuple) else out).requires_grad))
        sub.register_full_backward_hook(lambda m, gi, go, name=name: backward_calls.append(name))
    module.model(**batch_of(module)).loss.backward()
    assert seen == {"embeddings": False, "layer.0": False, "layer.1": True}
    assert backward_calls == ["layer.1"]  # backward stops at the lowest trainable block


def test_gradient_checkpointing_with_frozen_bottom_gives_the_same_gradients(tiny_model_dir):
    grads = []
    for checkpointing in (False, True):
        module = make(tiny_model_dir, {"name": "partial", "trainable_layers": 1},
                      gradient_checkpointing=checkpointing)
        for sub in module.model.modules():
            if isinstance(sub, torch.nn.Dropout):
                sub.p = 0.0  # same forward in train mode (checkpointing is only active when training)
        assert module.model.is_gradient_checkpointing == checkpointing
        module.model(**batch_of(module)).loss.backward()
        grads.append({n: p.grad for n, p in module.model.named_parameters() if p.grad is not None})
    assert set(grads[0]) == set(grads[1]) == module.trainable_names
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name])


def test_layer_wise_lr_decay(tiny_model_dir):
    module = make(tiny_model_dir, {"name": "full"}, layer_decay=0.5)
    optimizer = module.configure_optimizers()
    lr_of = {(g["unit"], g["group"]): g["lr"] for g in optimizer.param_groups}
    assert lr_of[("head", "decay")] == lr_of[("head", "no_decay")] == 1e-2
    assert lr_of[("block.1", "decay")] == pytest.approx(5e-3)
    assert lr_of[("block.0", "no_decay")] == pytest.approx(2.5e-3)
    assert lr_of[("embeddings", "decay")] == pytest.approx(1.25e-3)


def test_gradual_unfreezing_lets_blocks_learn_in_turn(tiny_model_dir):
    module = make(tiny_model_dir, {"name": "gradual_unfreezing", "every": 2, "unit": "step",
                                   "train_embeddings": True})
    module.trainer = L.Trainer(max_steps=8, accelerator="cpu", logger=False, enable_checkpointing=False,
                               enable_progress_bar=False)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    params = dict(module.model.named_parameters())
    head = "classifier.weight"
    top, bottom = "bert.encoder.layer.1.output.dense.weight", "bert.encoder.layer.0.output.dense.weight"
    snapshot = {n: params[n].detach().clone() for n in (head, top, bottom, "bert.embeddings.word_embeddings.weight")}

    def changed():
        return {n for n, v in snapshot.items() if not torch.equal(params[n], v)}

    steps(module, 2, optimizer, scheduler)
    assert changed() == {head}  # stage 0: the head only; the rest sit at LR 0, bit-identical
    steps(module, 2, optimizer, scheduler)
    assert changed() == {head, top}
    steps(module, 2, optimizer, scheduler)
    assert changed() == {head, top, bottom}
    steps(module, 2, optimizer, scheduler)
    assert changed() == set(snapshot)


def test_plan_counts_and_bytes(tiny_model_dir, tiny_csv, tmp_path):
    cfg = compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, "strategy=partial", "plan_only=true"))
    result = train(cfg)
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan == json.loads(json.dumps(result["plan"]))
    assert not (tmp_path / "checkpoints").exists()  # plan only: nothing trained
    groups = plan["params"]["by_group"]
    assert list(groups) == ["embeddings", "block.0", "block.1", "head"]
    assert groups["block.1"] == {"total": 6789, "trainable": 6789}
    assert groups["block.0"]["trainable"] == groups["embeddings"]["trainable"] == 0
    assert groups["head"] == {"total": 1056 + 99, "trainable": 1056 + 99}
    trainable = 6789 + 1056 + 99
    assert plan["params"]["trainable"] == trainable
    assert plan["memory_bytes"]["gradients"] == 4 * trainable
    assert plan["memory_bytes"]["optimizer_state"] == 2 * 4 * trainable  # AdamW: exp_avg + exp_avg_sq
    assert plan["backward_blocks"] == 1
    # One block of activations: s*b*h*(34 + 5*a*s/h) * 2 (fp32) with s=16, b=8, h=32, a=2.
    assert plan["memory_bytes"]["activations_estimate"] == int(16 * 8 * 32 * (34 + 5 * 2 * 16 / 32) * 2)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_training_flops_equal_pytorchs_flop_counter(attention):
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import BertConfig, BertForSequenceClassification

    from ftlab.planning.cost import training_flops

    config = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=256, num_labels=3, attn_implementation=attention)
    model = BertForSequenceClassification(config)
    with FlopCounterMode(display=False) as counter:
        model(input_ids=torch.randint(0, 100, (2, 40)), labels=torch.tensor([0, 1])).loss.backward()
    assert training_flops(model, batch_size=2, seq_len=40) == counter.get_total_flops() == 78_203_136


@pytest.mark.parametrize("strategy,bound", [
    ({"name": "head_only"}, 1e-4), ({"name": "bitfit"}, 0.0),  # (nearly) exact: no weight gradient in the blocks
    # Over by the lowest trainable block's input gradient into q, k, v, which autograd skips: within 5%.
    ({"name": "partial", "trainable_layers": 1}, 0.05), ({"name": "partial", "trainable_layers": 2}, 0.05),
    ({"name": "lora", "r": 8}, 0.05),
])
def test_strategy_flops_estimate_is_close_to_pytorchs_flop_counter(strategy, bound):
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import BertConfig, BertForSequenceClassification

    from ftlab.planning.cost import training_flops
    from ftlab.strategies import apply_strategy

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=256, num_labels=3, attn_implementation="eager")
    model, selection = apply_strategy(BertForSequenceClassification(config), strategy)
    with FlopCounterMode(display=False) as counter:
        model(input_ids=torch.randint(0, 100, (2, 40)), labels=torch.tensor([0, 1])).loss.backward()
    estimate = training_flops(model, 2, 40, selection)
    assert abs(estimate / counter.get_total_flops() - 1) <= bound


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("strategy", [{"name": "full"}, {"name": "partial", "trainable_layers": 1}])
def test_causal_lm_flops_estimate_is_within_ten_percent(tmp_path, tie, strategy):
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForCausalLM

    from ftlab.planning.cost import training_flops
    from ftlab.strategies import apply_strategy
    from tests.helpers import make_tiny_llama

    model, selection = apply_strategy(AutoModelForCausalLM.from_pretrained(make_tiny_llama(tmp_path, tie=tie)),
                                      strategy)
    ids = torch.randint(0, 20, (2, 12))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    # Measured: the estimate is about 8% over PyTorch's count on this model (its cause not broken down here).
    assert abs(training_flops(model, 2, 12, selection) / counter.get_total_flops() - 1) <= 0.10
