"""Interruption and exact resumption: save a last checkpoint on signals, restore RNG and data position."""

from __future__ import annotations

import logging
import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint

from ftlab.tracking.loggers import finish_loggers
from ftlab.training.validation_schedule import in_mid_epoch_validation, validation_follows

log = logging.getLogger(__name__)

# SIGUSR2: submitit's pre-timeout / preemption signal; SIGUSR1: the usual SLURM requeue signal.
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class TrainingInterrupted(Exception):
    """Raised after a signal stopped training and the last checkpoint was saved."""


class Resumption(Checkpoint):
    """Saves ``checkpoints/last.ckpt`` at a batch boundary when a signal arrives, then stops or hands over.

    A signal only sets a flag; the checkpoint is written after the current optimizer step, so it is consistent.
    If a scheduler installed its own handler before us (submitit's SIGUSR2 requeues the job), that handler
    runs next; otherwise training stops with ``TrainingInterrupted``. The callback state (RNG states and the
    position in the epoch) goes into every checkpoint, so a resumed run repeats the uninterrupted one exactly
    on CPU.

    A ``Checkpoint`` for Lightning, so it runs after early stopping and after the ``ModelCheckpoint`` listed before
    it, at a validation's end and at an epoch's end: a save there holds their decisions on that validation (the
    best checkpoint, the patience left), which the resumed run does not repeat.
    """

    def __init__(self, last_path: str | Path, datamodule=None):
        self.last_path = Path(last_path)
        self.datamodule = datamodule  # receives the position in the epoch to resume from
        self.pending: int | None = None
        self._previous: dict[int, Any] = {}
        self._restored: dict[str, Any] | None = None
        self._trainer = None

    # -- signals -----------------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        if self.pending is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C does not wait for the batch to end
        self.pending = signum

    def on_fit_start(self, trainer, pl_module) -> None:
        # The handlers in place before Lightning adds its own: a scheduler's, e.g. submitit's requeue on SIGUSR2.
        self._previous = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def _install(self) -> None:
        for sig in SIGNALS:
            signal.signal(sig, self._on_signal)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._restore_handlers()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # A save due just before a validation waits for it (see validation_follows). Every rank sees the same batch
        # count, so all of them wait together.
        if not validation_follows(trainer, batch_idx):
            self._save_if_signalled(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if in_mid_epoch_validation(trainer):
            self._save_if_signalled(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._save_if_signalled(trainer, pl_module)

    def _save_if_signalled(self, trainer, pl_module) -> None:
        pending = self.pending
        if trainer.world_size > 1:  # every rank must take part in saving
            flag = torch.tensor([pending or 0], device=pl_module.device)
            flag = trainer.strategy.reduce(flag, reduce_op="max")
            pending = int(flag.item()) or None
        if pending is None:
            return
        trainer.save_checkpoint(self.last_path)
        name = signal.Signals(pending).name
        log.warning("%s: saved %s at step %d", name, self.last_path, trainer.global_step)
        previous = self._previous.get(pending)
        self._restore_handlers()
        if callable(previous) and getattr(previous, "__module__", "").startswith("submitit"):
            # SIGUSR2: submitit requeues the job and exits; the requeued job resumes from last.ckpt.
            # SIGTERM: submitit ignores it (SLURM is ending the job); keep training until SLURM stops us.
            if pending == signal.SIGUSR2:
                # The requeue stops the whole job step at once, W&B's service process included: flush the run
                # now, or an offline run loses everything it logged before the preemption.
                finish_loggers(trainer.loggers, failed=True)
            previous(pending, None)
            self.pending = None
            self._install()
            return
        raise TrainingInterrupted(f"{name} at step {trainer.global_step}; resume from {self.last_path}")

    # -- state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        # Plain types and tensors only, so checkpoints load with torch.load(weights_only=True).
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state = {"torch": torch.get_rng_state(), "numpy": (name, keys.tolist(), pos, has_gauss, cached),
                 "python": random.getstate(), "job_dir": str(self.last_path.parent.parent)}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        if trainer is not None:
            epoch, batches = trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed
            if batches >= trainer.num_training_batches:  # saved at the end of an epoch: resume at the next one
                epoch, batches = epoch + 1, 0
            state.update(epoch=epoch, batches=batches)
        return state

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        """A job directory moved since its checkpoint was saved (``resume=<its new place>``): the checkpoint
        callbacks' states name files under the old place. Lightning would then drop the best checkpoint and its score
        (its directory "changed"), and the resumed job would keep and test whatever it validates next as the best,
        so those paths are read as under the new place. Lightning calls this before any callback's state loads."""
        states = checkpoint.get("callbacks") or {}
        old = (states.get(self.state_key) or {}).get("job_dir")
        new = str(self.last_path.parent.parent)
        if old is None or old == new:
            return
        for key, state in states.items():
            states[key] = _moved(state, old, new)
        log.info("the job moved from %s since its checkpoint was saved: its checkpoints are read from %s", old, new)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict
        if self.datamodule is not None and "epoch" in state_dict:
            self.datamodule.resume_at(state_dict["epoch"], state_dict["batches"])

    def on_train_start(self, trainer, pl_module) -> None:
        # Installed after Lightning registered its SIGTERM handler, which ours replaces: Lightning's broadcasts from
        # inside the handler and deadlocks DDP ranks that get the signal twice (from the scheduler and from rank 0).
        self._install()
        state, self._restored = self._restored, None
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        log.info("resumed at epoch %d, step %d", trainer.current_epoch, trainer.global_step)


def _moved(value: Any, old: str, new: str) -> Any:
    """``value`` (a callback's state) with every path under the directory ``old`` put under ``new``."""
    if isinstance(value, str) and (value == old or value.startswith(old.rstrip("/") + "/")):
        return new + value[len(old):]
    if isinstance(value, dict):
        return {_moved(k, old, new): _moved(v, old, new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_moved(v, old, new) for v in value)
    return value
