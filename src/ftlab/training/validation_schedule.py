"""How often a job validates: often enough that a short job's budget curve has several points."""

from __future__ import annotations

import math

import lightning as L

from ftlab.core.checks import ConfigError, is_int


def validation_interval(trainer_cfg, curve_points: int | None) -> float | None:
    """Lightning's ``val_check_interval`` that gives a job about ``curve_points`` validations (the points of its
    budget curve): a fraction of an epoch when the job has fewer epochs than points (Lightning rounds it to whole
    batches). None leaves Lightning's schedule (``trainer.val_check_interval``, else once per epoch) as it is."""
    epochs = trainer_cfg.get("max_epochs") or 1
    if not curve_points or trainer_cfg.get("val_check_interval") is not None or epochs >= curve_points:
        return None
    return 1 / math.ceil(curve_points / epochs)


def check_interval_fits(trainer_cfg, loader_batches: int | None, processes: int = 1) -> None:
    """A whole-batch ``val_check_interval`` must fall inside the epoch (Lightning refuses it mid-fit otherwise) unless
    ``check_val_every_n_epoch`` is null, when it counts batches across epochs. ``loader_batches``: the training
    dataloader's length in one process, before ``limit_train_batches`` (None for a stream of unknown length: not
    checked); ``processes``: devices x nodes, among which each epoch's batches are split."""
    every = trainer_cfg.get("val_check_interval")
    if (loader_batches is None or not is_int(every)
            or trainer_cfg.get("check_val_every_n_epoch", 1) is None):  # 1: Lightning's default
        return
    limit = trainer_cfg.get("limit_train_batches")
    loader_batches = math.ceil(loader_batches / processes)
    batches = (loader_batches if limit is None else min(loader_batches, limit) if isinstance(limit, int)
               else int(loader_batches * limit))
    if every > batches:
        raise ConfigError([f"trainer.val_check_interval={every}: an epoch has {batches} training batches; valid: "
                           f"1..{batches}, a fraction of an epoch in (0, 1], or set trainer.check_val_every_n_epoch="
                           "null to count batches across epochs"])


def keep_patience_in_epochs(callbacks: list, per_epoch: int) -> None:
    """Early stopping counts its patience in validations: with ``per_epoch`` of them per epoch, multiply it, so that
    extra curve points never stop a job sooner (in epochs) than once-per-epoch validation would."""
    from lightning.pytorch.callbacks import EarlyStopping

    for callback in callbacks:
        if isinstance(callback, EarlyStopping):
            callback.patience *= per_epoch


def validation_follows(trainer, batch_idx: int) -> bool:
    """Whether a validation may run right after this training batch: the epoch's last batch, or a step where
    ``val_check_interval`` falls. A state saved before that validation resumes after it, and the validation, its
    curve point and any best checkpoint it would have made are lost: savers wait for it (until
    ``on_validation_end`` mid-epoch, ``on_train_epoch_end`` at the epoch's end)."""
    if batch_idx + 1 >= trainer.num_training_batches:
        return True
    loop = trainer.fit_loop.epoch_loop
    every = trainer.val_check_batch
    if not loop._should_check_val_epoch() or every is None or every == float("inf"):
        return False
    index = loop.total_batch_idx if trainer.check_val_every_n_epoch is None else batch_idx
    return (index + 1) % every == 0


def in_mid_epoch_validation(trainer) -> bool:
    """Whether the validation now ending ran inside an epoch of ``fit`` (not the sanity check, not at its end)."""
    return (trainer.state.fn == "fit" and not trainer.sanity_checking
            and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)


class CurvePoints(L.Callback):
    """Spreads ``per_epoch`` validations over each epoch so that the last one falls on the epoch's last batch.

    Lightning validates every ``int(batches * val_check_interval)`` batches and not again at the epoch's end unless
    that count divides the epoch: 4 validations over 50 batches would land on batches 12, 24, 36 and 48, and the last
    two steps would never be validated (nor be eligible as the best checkpoint). Here they land on 13, 26, 39 and 50.
    """

    def __init__(self, per_epoch: int):
        self.per_epoch = per_epoch
        self._every: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        batches = trainer.num_training_batches
        if isinstance(batches, int) and batches > 0:
            trainer.val_check_batch = max(1, math.ceil(batches / self.per_epoch))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        every = trainer.val_check_batch
        if batch_idx + 1 == trainer.num_training_batches and isinstance(every, int) and (batch_idx + 1) % every:
            self._every, trainer.val_check_batch = every, batch_idx + 1  # this batch is followed by a validation

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._every is not None:
            trainer.val_check_batch, self._every = self._every, None
