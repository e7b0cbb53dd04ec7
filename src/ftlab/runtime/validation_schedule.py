"""How often a job validates: often enough that a short job's budget curve has several points."""

from __future__ import annotations

import math


def validation_interval(trainer_cfg, curve_points: int | None) -> float | None:
    """Lightning's ``val_check_interval`` that gives a job about ``curve_points`` validations (the points of its
    budget curve): a fraction of an epoch when the job has fewer epochs than points (Lightning rounds it to whole
    batches). None leaves Lightning's schedule (``trainer.val_check_interval``, else once per epoch) as it is."""
    epochs = trainer_cfg.get("max_epochs") or 1
    if not curve_points or trainer_cfg.get("val_check_interval") is not None or epochs >= curve_points:
        return None
    return 1 / math.ceil(curve_points / epochs)


def check_curve_points(c) -> None:
    """``curve_points`` is a positive integer or null."""
    if c.get("curve_points") is not None:
        c.positive("curve_points", int)


def keep_patience_in_epochs(callbacks: list, per_epoch: int) -> None:
    """Early stopping counts its patience in validations: with ``per_epoch`` of them per epoch, multiply it, so that
    extra curve points never stop a job sooner (in epochs) than once-per-epoch validation would."""
    from lightning.pytorch.callbacks import EarlyStopping

    for callback in callbacks:
        if isinstance(callback, EarlyStopping):
            callback.patience *= per_epoch


def validates_mid_epoch_after(trainer, batch_idx: int) -> bool:
    """Whether Lightning runs a validation right after this training batch, before the epoch's last batch (from
    ``val_check_interval``). A state saved before that validation resumes after it: the validation, its curve point
    and any best checkpoint it would have made are lost, so savers wait for it."""
    if batch_idx + 1 >= trainer.num_training_batches:
        return False  # the epoch's own validation: savers wait for the epoch's end instead
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
