"""The LightningModule: builds the model from plain config, freezes it, trains, and measures it."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from ftlab.models import count_parameters, load_model, load_tokenizer
from ftlab.strategies import apply_strategy


def is_norm(module: nn.Module) -> bool:
    """Normalisation layers by type name: LayerNorm, RMSNorm (LLaMA), GroupNorm, BatchNorm, ..."""
    return "norm" in type(module).__name__.lower()


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters split into decay / no-decay groups (biases and norm weights get no decay).

    Norms are found by module type, not by name, so RMSNorm weights named ``input_layernorm`` or ``norm``
    are excluded as well as BERT's ``LayerNorm``.
    """
    no_decay = set()
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if is_norm(module) or param_name == "bias":
                no_decay.add(full)
    decay_params, no_decay_params = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay_params if name in no_decay else decay_params).append(param)
    groups = [
        {"params": decay_params, "weight_decay": weight_decay, "group": "decay"},
        {"params": no_decay_params, "weight_decay": 0.0, "group": "no_decay"},
    ]
    return [g for g in groups if g["params"]]


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """Accuracy (micro) and macro F1 / precision / recall under ``<prefix>/<name>``."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
        },
        prefix=f"{prefix}/",
    )


class FineTuneModule(L.LightningModule):
    """Fine-tunes a Hugging Face sequence classifier under a freezing strategy.

    Every argument is plain config (dicts and lists), saved as hyperparameters, so
    ``FineTuneModule.load_from_checkpoint(path)`` rebuilds the same model and freezing.
    """

    def __init__(self, model: dict, strategy: dict, optimizer: dict, scheduler: dict,
                 label_names: list[str], task: str = "text_classification"):
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = load_tokenizer(model)
        self.model = load_model(model, label_names, pad_token_id=self.tokenizer.pad_token_id)
        # Freeze now, before Lightning wraps the model (DDP/FSDP) and before configure_optimizers.
        self.model.train()  # from_pretrained returns eval mode, which would silently disable dropout
        self.trainable_names = apply_strategy(self.model, strategy)
        self.param_counts = count_parameters(self.model)

        num_classes = len(label_names)
        self.val_metrics = classification_metrics(num_classes, "val")
        self.test_metrics = classification_metrics(num_classes, "test")
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.confusion_matrix: list[list[int]] | None = None

    def forward(self, **batch: torch.Tensor):
        return self.model(**batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def _eval_step(self, batch, metrics: MetricCollection, loss_metric: MeanMetric):
        out = self.model(**batch)
        preds = out.logits.argmax(dim=-1)
        metrics.update(preds, batch["labels"])
        loss_metric.update(out.loss, weight=len(batch["labels"]))
        return preds

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, self.val_loss)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val", self.val_metrics, self.val_loss)

    def test_step(self, batch, batch_idx: int) -> None:
        preds = self._eval_step(batch, self.test_metrics, self.test_loss)
        self.test_confusion.update(preds, batch["labels"])

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test", self.test_metrics, self.test_loss)
        self.confusion_matrix = self.test_confusion.compute().tolist()
        self.test_confusion.reset()

    def _log_epoch(self, prefix: str, metrics: MetricCollection, loss_metric: MeanMetric) -> None:
        # compute() syncs across ranks once per epoch, not per step.
        values = {name: value for name, value in metrics.compute().items()}
        values[f"{prefix}/loss"] = loss_metric.compute()
        self.log_dict(values, prog_bar=prefix == "val")
        metrics.reset()
        loss_metric.reset()

    def configure_optimizers(self):
        opt_cfg = dict(self.hparams.optimizer)
        groups = param_groups(self.model, float(opt_cfg.pop("weight_decay", 0.0)))
        # _partial_ keeps the parameter tensors out of Hydra's config merge (which would copy them).
        optimizer = instantiate(opt_cfg, _partial_=True, _convert_="all")(groups)
        sched_cfg = self.hparams.scheduler
        if not sched_cfg or sched_cfg.get("name") in (None, "none"):
            return optimizer
        from transformers import get_scheduler

        total = int(self.trainer.estimated_stepping_batches)
        warmup = sched_cfg.get("warmup_steps")
        if warmup is None:
            warmup = math.ceil(float(sched_cfg.get("warmup_ratio") or 0.0) * total)
        scheduler = get_scheduler(sched_cfg["name"], optimizer, num_warmup_steps=int(warmup), num_training_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
