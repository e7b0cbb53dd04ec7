"""Checkpoints that resume exactly: written whole or not at all, and never between an epoch's last batch and its
validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from ftlab.core.atomic_files import atomic_write
from ftlab.core.checks import FtlabError
from ftlab.training.validation_schedule import in_mid_epoch_validation, validation_follows


class CheckpointError(FtlabError):
    """A checkpoint could not be written (disk full, directory not writable; the previous one is intact), or one
    read is not this job's."""


class SafeCheckpointIO(TorchCheckpointIO):
    """Local checkpoints are written to a temporary file in the same directory, flushed to disk, then renamed over
    the target, so a target is always either the previous checkpoint or the new one, whole.

    Lightning's own "atomic" save goes through an fsspec transaction whose temporary file lives in the system temp
    directory; committing it moves it across file systems, which copies into the target in place: a full disk
    then leaves neither the old checkpoint nor the new one. An ``OSError`` becomes one line saying what happened and
    what is left. Remote paths (``s3://``, ...) keep Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, lambda tmp: _save(checkpoint, tmp))
        except (OSError, RuntimeError) as err:
            # torch's zip writer can turn a failed write into a RuntimeError ("unexpected pos"); the OSError is
            # its context then. Any other RuntimeError is not ours to rename.
            cause = err if isinstance(err, OSError) else err.__context__
            if not isinstance(cause, OSError):
                raise
            raise CheckpointError(f"{target}: the checkpoint could not be written ({cause.strerror or cause}); any "
                                  "previous checkpoint there is intact: free space or fix permissions, then resume"
                                  ) from err


def _save(checkpoint: dict[str, Any], path: Path) -> None:
    # Through a Python file object: a full disk then raises an OSError (the context of torch's RuntimeError), which
    # the C++ writer that torch.save uses for a path would not.
    with open(path, "wb") as f:
        torch.save(checkpoint, f)


class ResumableCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` for the periodic full training state (``last.ckpt`` every N steps) that never saves between
    a training step and the validation that follows it.

    A checkpoint taken there resumes after that validation, skipping it: the best checkpoint, early stopping and the
    budget curve would then differ from an uninterrupted run. When the period falls on such a step, the save waits
    for the validation (for the end of the epoch, when it is the epoch's last batch).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._deferred = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        due = self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
        if due and validation_follows(trainer, batch_idx):
            self._deferred = True
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if in_mid_epoch_validation(trainer):
            self._save_deferred(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._save_deferred(trainer)

    def _save_deferred(self, trainer) -> None:
        if self._deferred and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._deferred = False
