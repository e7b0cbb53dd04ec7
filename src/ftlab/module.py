"""The LightningModule: builds the model from plain config, freezes it, trains, and measures it."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassConfusionMatrix

from ftlab.distributed import shard_model
from ftlab.models import count_parameters, find_parts, load_model, load_tokenizer, param_name
from ftlab.strategies import apply_strategy
from ftlab.tasks import task_module


def is_norm(module: nn.Module) -> bool:
    """Normalisation layers by type name: LayerNorm, RMSNorm (LLaMA), GroupNorm, BatchNorm, ..."""
    return "norm" in type(module).__name__.lower()


def no_decay_names(model: nn.Module) -> set[str]:
    """Biases and normalisation weights, found by module type rather than name.

    Matching by type catches LLaMA's RMSNorm weights (``input_layernorm``, ``norm``) as well as BERT's ``LayerNorm``.
    """
    names = set()
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            if is_norm(module) or name == "bias":
                names.add(param_name(f"{module_name}.{name}" if module_name else name))
    return names


def param_groups(model: nn.Module, weight_decay: float, lr: float | None = None, layer_decay: float | None = None,
                 stages: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Trainable parameters in optimizer groups: decay / no-decay, and per model part when needed.

    With ``layer_decay`` (discriminative fine-tuning) the group of block i gets ``lr * layer_decay**depth`` where
    depth counts blocks from the top (head 0, top block 1, ..., embeddings L+1). With ``stages`` (gradual
    unfreezing) each group records the stage at which it starts learning.
    """
    unit_of, depth = {}, {}
    if layer_decay is not None or stages:
        units = find_parts(model).groups()
        n_blocks = len(units) - 2
        for unit, names in units.items():
            unit_of.update(dict.fromkeys(names, unit))
            depth[unit] = 0 if unit == "head" else n_blocks + 1 if unit == "embeddings" else n_blocks - int(
                unit.split(".")[1])
    no_decay = no_decay_names(model)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        name = param_name(name)  # as in the unwrapped model, also under FSDP
        unit = unit_of.get(name, "all")
        kind = "no_decay" if name in no_decay else "decay"
        group = groups.setdefault((unit, kind), {
            "params": [], "weight_decay": 0.0 if kind == "no_decay" else weight_decay, "group": kind,
            "name": kind if unit == "all" else f"{unit}/{kind}",  # LearningRateMonitor labels curves with it
            "unit": unit, "stage": (stages or {}).get(name, 0)})
        if layer_decay is not None:
            group["lr"] = lr * layer_decay ** depth[unit]
        group["params"].append(param)
    return list(groups.values())


def gate_stages(scheduler: LambdaLR, stages: list[int], steps_per_stage: int) -> LambdaLR:
    """Multiply each group's LR schedule by 0 until its unfreezing stage is reached.

    Parameters waiting for their stage keep ``requires_grad`` and sit at LR 0, so an AdamW step leaves them
    bit-identical and DDP's gradient buckets never change.
    """
    def gated(fn, stage):
        return lambda step: fn(step) if step // steps_per_stage >= stage else 0.0

    lambdas = [gated(fn, stage) for fn, stage in zip(scheduler.lr_lambdas, stages)]
    return LambdaLR(scheduler.optimizer, lambdas)


class FineTuneModule(L.LightningModule):
    """Fine-tunes a Hugging Face model for a task (classification, NER, causal LM) under a freezing strategy.

    Every argument is plain config (dicts and lists), saved as hyperparameters, so
    ``FineTuneModule.load_from_checkpoint(path)`` rebuilds the same model and freezing.
    """

    def __init__(self, model: dict, strategy: dict, optimizer: dict, scheduler: dict,
                 label_names: list[str], task: str = "text_classification"):
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = load_tokenizer(model)
        self.model = load_model(model, label_names, pad_token_id=self.tokenizer.pad_token_id, task=task)
        # Freeze now, before Lightning wraps the model (DDP/FSDP) and before configure_optimizers.
        self.model.train()  # from_pretrained returns eval mode, which would silently disable dropout
        self.selection = apply_strategy(self.model, strategy)
        self.trainable_names = self.selection.trainable
        self.param_counts = count_parameters(self.model)

        self.task = task
        pieces = task_module(task)
        self.loss_weight = pieces.loss_weight  # what a batch's mean loss averages over: examples or tokens
        self.val_metrics = pieces.metrics(label_names, "val")
        self.test_metrics = pieces.metrics(label_names, "test")
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.test_confusion = MulticlassConfusionMatrix(len(label_names)) if task == "text_classification" else None
        # Filled by the last test pass: the confusion matrix (classification), scores per entity type (NER).
        self.test_details: dict[str, Any] = {}

    def forward(self, **batch: torch.Tensor):
        return self.model(**batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(batch["labels"]))
        # Checked at the logging interval only: a per-step check would force a device sync every step.
        interval = self._trainer.log_every_n_steps if self._trainer is not None else 1
        if self.global_step % interval == 0 and not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {loss.item()} at step {self.global_step}")
        return loss

    def _eval_step(self, batch, metrics: MetricCollection | None, loss_metric: MeanMetric):
        out = self.model(**batch)
        labels = batch["labels"]
        loss_metric.update(out.loss, weight=self.loss_weight(labels))  # exact epoch means over examples / tokens
        if metrics is None:
            return None
        preds = out.logits.argmax(dim=-1)
        metrics.update(preds, labels)
        return preds

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, self.val_loss)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val", self.val_metrics, self.val_loss)

    def test_step(self, batch, batch_idx: int) -> None:
        preds = self._eval_step(batch, self.test_metrics, self.test_loss)
        if self.test_confusion is not None:
            self.test_confusion.update(preds, batch["labels"])

    def on_test_epoch_end(self) -> None:
        if self.test_confusion is not None:
            self.test_details = {"confusion_matrix": {"labels": list(self.hparams.label_names),
                                                      "matrix": self.test_confusion.compute().tolist()}}
            self.test_confusion.reset()
        elif self.task == "token_classification":
            self.test_details = {"entity_scores": self.test_metrics["entity"].per_type()}
        self._log_epoch("test", self.test_metrics, self.test_loss)

    def _log_epoch(self, prefix: str, metrics: MetricCollection | None, loss_metric: MeanMetric) -> None:
        # compute() syncs across ranks once per epoch, not per step.
        values = dict(metrics.compute()) if metrics is not None else {}
        values[f"{prefix}/loss"] = loss_metric.compute()
        if self.task == "causal_lm":
            values[f"{prefix}/ppl"] = torch.exp(values[f"{prefix}/loss"])
        self.log_dict(values, prog_bar=prefix == "val")
        if metrics is not None:
            metrics.reset()
        loss_metric.reset()

    def configure_model(self) -> None:
        if self._trainer is not None:  # load_from_checkpoint calls this hook without a Trainer
            self.model = shard_model(self.model, self._trainer.strategy)  # a no-op unless the strategy is FSDP

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        from torch.distributed.fsdp import FullyShardedDataParallel

        if gradient_clip_val and isinstance(self.model, FullyShardedDataParallel) and gradient_clip_algorithm != "value":
            # Lightning's FSDP precision plugin refuses norm clipping (Lightning issue 19235): the norm of sharded
            # gradients needs FSDP's own all-reduce.
            self.model.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        opt_cfg = dict(self.hparams.optimizer)
        weight_decay = float(opt_cfg.pop("weight_decay", 0.0))
        layer_decay = opt_cfg.pop("layer_decay", None)
        selection = self.selection
        groups = param_groups(self.model, weight_decay, opt_cfg.get("lr"), layer_decay,
                              selection.stages if selection.num_stages > 1 else None)
        # _partial_ keeps the parameter tensors out of Hydra's config merge (which would copy them).
        optimizer = instantiate(opt_cfg, _partial_=True, _convert_="all")(groups)
        sched_cfg = dict(self.hparams.scheduler or {})
        name = sched_cfg.get("name") or "none"
        if name == "none" and selection.num_stages == 1:
            return optimizer
        from transformers import get_scheduler

        total = int(self.trainer.estimated_stepping_batches)
        warmup = sched_cfg.get("warmup_steps")
        if warmup is None:
            warmup = math.ceil(float(sched_cfg.get("warmup_ratio") or 0.0) * total)
        scheduler = get_scheduler("constant" if name == "none" else name, optimizer,
                                  num_warmup_steps=int(warmup), num_training_steps=total)
        if selection.num_stages > 1:
            steps = selection.every
            if selection.unit == "epoch":
                steps *= math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches)
            scheduler = gate_stages(scheduler, [g["stage"] for g in optimizer.param_groups], steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
