"""The LightningModule: builds the model from plain config, freezes it, trains, and measures it."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy
from torchmetrics import MeanMetric, MetricCollection, SumMetric

from ftlab.model.anatomy import count_parameters
from ftlab.model.loading import load_model, load_tokenizer
from ftlab.strategies import apply_strategy, get_strategy
from ftlab.strategies.frozen_prefix import frozen_modules
from ftlab.tasks.registry import get_task
from ftlab.training.checkpoint_match import ADVICE, checkpoint_mismatch
from ftlab.training.checkpointing import CheckpointError
from ftlab.training.distributed import shard_model
from ftlab.training.optimization import build_optimizer

SHARDED = (FSDPStrategy, DeepSpeedStrategy)  # checkpoints in their own (sharded) layout


class FineTuneModule(L.LightningModule):
    """Fine-tunes a Hugging Face model for a task (classification, NER, causal LM) under a strategy (freezing or
    a PEFT adapter).

    Every argument is plain config (dicts and lists), saved as hyperparameters, so
    ``FineTuneModule.load_from_checkpoint(path)`` rebuilds the same model and freezing.
    """

    def __init__(self, model: dict, strategy: dict, optimizer: dict, scheduler: dict,
                 label_names: list[str], task: str = "text_classification", layer_decay: float | None = None,
                 tokenizer=None):
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model, task)
        # Freeze now, before Lightning wraps the model (DDP/FSDP) and before configure_optimizers.
        self.model, self.selection = self.build_model()
        self.trainable_names = self.selection.trainable
        self.param_counts = count_parameters(self.model, skip=self.selection.copies)
        self.train()  # the frozen modules' mode (strategy.frozen_dropout), now that they are known

        self.task = get_task(task)
        self.val_metrics = self.task.metrics(label_names, "val")
        self.test_metrics = self.task.metrics(label_names, "test")
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.prefix_cache = None  # a PrefixCache when cache_frozen=true (set by train)
        # Filled by the last test pass: the confusion matrix (classification), scores per entity type (NER).
        self.test_details: dict[str, Any] = {}
        # Examples the last test pass scored, over all ranks: fewer than the split under trainer.limit_test_batches.
        self.test_count = SumMetric()
        self.test_examples: int | None = None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse, in one line, a checkpoint whose tensors are not this module's (``checkpoint_mismatch``): Lightning
        calls this before it loads the weights. Sharded strategies (FSDP, DeepSpeed) load their own layout."""
        saved = checkpoint.get("state_dict")
        trainer = self._trainer  # None in load_from_checkpoint, which builds the module from the same checkpoint
        if not isinstance(saved, dict) or not saved or trainer is None or isinstance(trainer.strategy, SHARDED):
            return
        saved_strategy = (checkpoint.get("hyper_parameters") or {}).get("strategy") or {}
        if problem := checkpoint_mismatch(self.state_dict(), saved, self.hparams.strategy.get("name"),
                                          saved_strategy.get("name") if isinstance(saved_strategy, dict) else None):
            raise CheckpointError(f"{trainer.ckpt_path}: {problem}; {ADVICE}")

    def build_model(self, quantized: bool = True):
        """The pretrained checkpoint with the task's head under the job's strategy (wrapped if it adds an adapter),
        in train mode, and the strategy's selection; ``quantized=False`` loads a QLoRA job's base in full precision
        (for its merged export)."""
        hp = self.hparams
        strategy = dict(hp.strategy) if quantized else {**hp.strategy, "quantize": None}
        model = load_model(hp.model, hp.label_names, pad_token_id=self.tokenizer.pad_token_id, task=hp.task,
                           **get_strategy(strategy).load_kwargs(strategy))
        model.train()  # from_pretrained returns eval mode, which would silently disable dropout
        return apply_strategy(model, strategy)

    def train(self, mode: bool = True):
        """Train mode; with ``strategy.frozen_dropout=false`` the frozen modules stay in eval mode (no dropout), so
        a frozen prefix computes the same output every time (transformers issue 24479: by default they would drop
        out like the trained ones). Lightning's evaluation loops restore these per-module modes afterwards."""
        super().train(mode)
        if mode and self.hparams.strategy.get("frozen_dropout", True) is False:
            for module in frozen_modules(self.model):
                module.eval()
        return self

    def forward(self, **batch: torch.Tensor):
        return self.model(**batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        index = batch.pop("example_index", None)
        if self.prefix_cache is not None:
            loss = self.prefix_cache.forward(self.model, batch, index).loss
        else:
            loss = self.model(**batch).loss
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(batch["labels"]))
        # Checked at the logging interval only: a per-step check would force a device sync every step.
        interval = self._trainer.log_every_n_steps if self._trainer is not None else 1
        if self.global_step % interval == 0 and not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {loss.item()} at step {self.global_step}")
        return loss

    def on_train_epoch_end(self) -> None:
        if self.prefix_cache is not None:
            self.prefix_cache.sync()

    def _eval_step(self, batch, metrics: MetricCollection | None, loss_metric: MeanMetric):
        out = self.model(**batch)
        labels = batch["labels"]
        loss_metric.update(out.loss, weight=self.task.loss_weight(labels))  # exact epoch means over examples / tokens
        if metrics is not None:
            metrics.update(self.task.metric_inputs(out.logits), labels)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, self.val_loss)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val", self.val_metrics, self.val_loss)

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, self.test_loss)
        self.test_count.update(batch["labels"].shape[0])

    def on_test_epoch_end(self) -> None:
        self.test_examples = int(self.test_count.compute())
        self.test_count.reset()
        self._log_epoch("test", self.test_metrics, self.test_loss)

    def _log_epoch(self, prefix: str, metrics: MetricCollection | None, loss_metric: MeanMetric) -> None:
        # compute() syncs across ranks once per epoch, not per step.
        values = dict(metrics.compute()) if metrics is not None else {}
        values[f"{prefix}/loss"] = loss_metric.compute()
        values.update(self.task.derived_metrics(prefix, values))
        if prefix == "test":
            self.test_details = self.task.test_details(metrics, values, list(self.hparams.label_names))
        self.log_dict(values, prog_bar=prefix == "val")
        if metrics is not None:
            metrics.reset()
        loss_metric.reset()

    def configure_model(self) -> None:
        if self._trainer is not None:  # load_from_checkpoint calls this hook without a Trainer
            self.model = shard_model(self.model, self._trainer.strategy)  # a no-op unless the strategy is FSDP
            if self.hparams.model.get("compile"):
                self.model.compile()  # in place: parameter names and checkpoints stay those of the eager model

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        from torch.distributed.fsdp import FullyShardedDataParallel

        sharded = isinstance(self.model, FullyShardedDataParallel)
        if gradient_clip_val and sharded and gradient_clip_algorithm != "value":
            # Lightning's FSDP precision plugin refuses norm clipping (Lightning issue 19235): the norm of sharded
            # gradients needs FSDP's own all-reduce.
            self.model.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        return build_optimizer(self.model, dict(self.hparams.optimizer), self.hparams.scheduler, self.selection,
                               self.hparams.layer_decay, self._trainer)
