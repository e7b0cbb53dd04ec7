"""Optimizer groups hold exactly the trainable parameters; no decay on biases and norms; the loss goes down; a
checkpoint of another job's model is refused before it loads."""

from __future__ import annotations

import pytest
import torch

from ftlab.training.module import FineTuneModule
from ftlab.training.optimization import param_groups

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

    schedule = {"name": "linear", "warmup_ratio": 0.2, "warmup_steps": None}
    module = make_module(tiny_model_dir, {"name": "full"}, schedule)
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


def _prefix_and_logits(module, batch):
    out = module.model(**batch, output_hidden_states=True)
    return out.hidden_states[1], out.logits  # after the first (frozen) block of two


@pytest.mark.parametrize("frozen_dropout", [True, False])
def test_frozen_dropout_decides_whether_frozen_modules_drop_out(tiny_model_dir, frozen_dropout):
    module = make_module(tiny_model_dir, {"name": "partial", "trainable_layers": 1, "frozen_dropout": frozen_dropout})
    modes = {name: m.training for name, m in module.model.named_modules()}
    # Frozen: the embeddings and block 0. Trained: block 1, the pooler, the classifier and its dropout.
    frozen = ("bert.embeddings", "bert.embeddings.dropout", "bert.encoder.layer.0")
    assert all(modes[name] is frozen_dropout for name in frozen)
    assert modes["bert.encoder.layer.0.attention.self.dropout"] is frozen_dropout
    assert modes["bert.encoder.layer.1"] and modes["bert.encoder.layer.1.output.dropout"] and modes["dropout"]
    assert modes["classifier"] and modes["bert.pooler"]

    batch = {"input_ids": torch.randint(5, 20, (4, 12)), "attention_mask": torch.ones(4, 12, dtype=torch.long)}
    torch.manual_seed(0)
    (prefix_a, logits_a), (prefix_b, logits_b) = _prefix_and_logits(module, batch), _prefix_and_logits(module, batch)
    assert torch.equal(prefix_a, prefix_b) is not frozen_dropout  # deterministic exactly when frozen modules are eval
    assert not torch.equal(logits_a, logits_b)  # the trained top still drops out
    module.eval()
    assert not any(m.training for m in module.model.modules())
    module.train()
    assert {name: m.training for name, m in module.model.named_modules()} == modes


@pytest.mark.slow
def test_frozen_modules_stay_in_eval_mode_through_training_and_validation(tiny_model_dir, tiny_csv, tmp_path):
    from ftlab.train import train
    from tests.helpers import TrainingModes, compose, tiny_overrides

    TrainingModes.seen.clear()
    train(compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, "trainer.max_epochs=2", "strategy=partial",
                                 "strategy.frozen_dropout=false",
                                 "+callbacks.modes._target_=tests.helpers.TrainingModes")))
    assert len(TrainingModes.seen) == 12  # 6 steps per epoch, with validations between them
    for modes in TrainingModes.seen:
        assert not any(on for name, on in modes.items() if name.startswith(("bert.embeddings", "bert.encoder.layer.0")))
        assert all(on for name, on in modes.items() if name.startswith(("bert.encoder.layer.1", "classifier")))


@pytest.mark.slow
def test_a_compiled_job_trains_like_the_eager_one_and_exports_eager_names(tiny_model_dir, tiny_csv, tmp_path):
    import csv

    import torch._inductor.config
    from safetensors.torch import load_file

    from ftlab.train import train
    from tests.helpers import compose, tiny_overrides

    runs = {}
    for name, extra in (("eager", []), ("compiled", ["model.compile=true"])):
        out = tmp_path / name
        # Inductor draws dropout masks with its own generator; its fallback uses eager's, so the runs can compare.
        with torch._inductor.config.patch(fallback_random=True):
            metrics = train(compose(tiny_overrides(tiny_model_dir, tiny_csv, out, "trainer.max_epochs=1",
                                                   "logger=csv", "trainer.log_every_n_steps=1", *extra)))
        with open(next(out.glob("csv/*/metrics.csv"))) as f:
            runs[name] = (metrics, [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")])
    (eager, eager_losses), (compiled, compiled_losses) = runs["eager"], runs["compiled"]
    assert len(compiled_losses) == 6
    assert compiled_losses == pytest.approx(eager_losses, abs=1e-4)
    assert compiled["test/loss"] == pytest.approx(eager["test/loss"], abs=1e-4)
    exported = load_file(tmp_path / "compiled" / "model" / "model.safetensors")
    assert exported.keys() == load_file(tmp_path / "eager" / "model" / "model.safetensors").keys()


def test_a_checkpoint_of_another_strategy_is_refused_in_one_line_before_loading(tiny_model_dir, tmp_path):
    """A last.ckpt copied from a LoRA job into a full fine-tuning job: the tensors are named differently (PEFT wraps
    the model), so Lightning's load_state_dict would print a page of names; the module names the strategies."""
    import lightning as L

    from ftlab.training.checkpointing import CheckpointError

    lora = make_module(tiny_model_dir, {"name": "lora", "r": 4, "alpha": 8, "dropout": 0.0,
                                        "target_modules": ["query", "value"]})
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": lora.state_dict(), "hyper_parameters": dict(lora.hparams),
                "pytorch-lightning_version": L.__version__, "global_step": 3, "epoch": 0}, path)
    full = make_module(tiny_model_dir, {"name": "full"})
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    batches = [{"input_ids": torch.ones(2, 4, dtype=torch.long), "attention_mask": torch.ones(2, 4, dtype=torch.long),
                "labels": torch.zeros(2, dtype=torch.long)}]
    with pytest.raises(CheckpointError) as err:
        trainer.fit(full, train_dataloaders=batches, ckpt_path=path)
    n_model, n_lora = len(full.state_dict()), len(lora.state_dict())
    shared = len(full.state_dict().keys() & lora.state_dict().keys())
    assert str(err.value) == (
        f"{path}: not a checkpoint of this job's model: saved by a strategy=lora job, and this job is strategy=full; "
        f"{n_model - shared} of the model's tensors are not in it (e.g. 'model.bert.embeddings.word_embeddings."
        f"weight'); {n_lora - shared} of its tensors are not in the model (e.g. 'model.base_model.model.bert."
        "embeddings.word_embeddings.weight'); resume a job from its own checkpoints/last.ckpt (a checkpoint of "
        "another job cannot continue this one)")
    assert shared == 0  # every name differs: the counts above are every tensor of each
