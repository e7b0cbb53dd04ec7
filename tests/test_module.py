"""Optimizer groups hold exactly the trainable parameters; no decay on biases and norms; the loss goes down."""

from __future__ import annotations

import pytest
import torch

from ftlab.module import FineTuneModule
from ftlab.optimization import param_groups

OPTIMIZER = {"_target_": "torch.optim.AdamW", "lr": 3e-3, "weight_decay": 0.01}


def make_module(model_dir, strategy, scheduler=None):
    return FineTuneModule(model={"pretrained_model_name_or_path": str(model_dir)}, strategy=strategy,
                          optimizer=OPTIMIZER, scheduler=scheduler or {"name": "none"},
                          label_names=["food", "sport", "tech"])


@pytest.mark.parametrize("strategy", [{"name": "full"}, {"name": "partial", "trainable_layers": 1},
                                      {"name": "head_only"}])
def test_optimizer_holds_only_trainable_parameters(tiny_model_dir, strategy):
    module = make_module(tiny_model_dir, strategy)
    optimizer = module.configure_optimizers()
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trainable = {id(p) for p in module.model.parameters() if p.requires_grad}
    assert in_optimizer == trainable
    assert {n for n, p in module.model.named_parameters() if p.requires_grad} == module.trainable_names


def group_names(model, groups):
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {g["group"]: ({by_id[id(p)] for p in g["params"]}, g["weight_decay"]) for g in groups}


def test_no_decay_on_biases_and_layernorm(tiny_model_dir):
    model = make_module(tiny_model_dir, {"name": "full"}).model
    groups = group_names(model, param_groups(model, 0.01))
    no_decay, wd = groups["no_decay"]
    assert wd == 0.0 and groups["decay"][1] == 0.01
    expected = {n for n, _ in model.named_parameters() if n.endswith(".bias") or "LayerNorm" in n}
    assert no_decay == expected
    assert "bert.embeddings.word_embeddings.weight" in groups["decay"][0]


def test_no_decay_on_llama_rmsnorm():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=3, pad_token_id=0)
    model = LlamaForSequenceClassification(config)
    no_decay = group_names(model, param_groups(model, 0.1))["no_decay"][0]
    # RMSNorm weights are not called "LayerNorm": matched by module type.
    assert no_decay == {"model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
                        "model.layers.1.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight",
                        "model.norm.weight"}


def test_frozen_parameters_get_no_gradient(tiny_model_dir):
    module = make_module(tiny_model_dir, {"name": "partial", "trainable_layers": 1})
    batch = module.tokenizer(["goal match team", "bread cheese soup"], padding=True, return_tensors="pt")
    module.model(**batch, labels=torch.tensor([1, 0])).loss.backward()
    for name, param in module.model.named_parameters():
        assert (param.grad is not None) == (name in module.trainable_names), name


def test_loss_goes_down_over_a_few_steps(tiny_model_dir):
    torch.manual_seed(0)
    module = make_module(tiny_model_dir, {"name": "full"})
    optimizer = module.configure_optimizers()
    texts = ["goal match team score", "bread cheese pasta soup", "chip software laptop code"] * 2
    batch = dict(module.tokenizer(texts, padding=True, return_tensors="pt"), labels=torch.tensor([1, 0, 2] * 2))
    losses = []
    for _ in range(15):
        loss = module.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert 0.9 < losses[0] < 1.4  # about ln(3) = 1.10 for a fresh 3-class head
    assert losses[-1] < 0.3 * losses[0], losses


def test_warmup_and_linear_decay(tiny_model_dir):
    import lightning as L

    module = make_module(tiny_model_dir, {"name": "full"}, {"name": "linear", "warmup_ratio": 0.2, "warmup_steps": None})
    trainer = L.Trainer(max_steps=10, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False)
    module.trainer = trainer
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[2] == pytest.approx(3e-3) and lrs[6] == pytest.approx(3e-3 * 4 / 8)
