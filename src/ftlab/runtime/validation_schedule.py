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
