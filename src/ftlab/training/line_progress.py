"""Training progress as plain lines, for output that is not a terminal (a SLURM log, ``nohup``, a CI log).

tqdm redraws its bar with carriage returns and cursor-up codes; in a file those become one enormous line per epoch
with dozens of escape codes. When standard error is not a terminal, ``LineProgress`` takes the bar's place and logs
about ``lines`` lines over the whole fit: step, epoch, the training loss and the speed.
"""

from __future__ import annotations

import logging
import sys
import time

import lightning as L
from lightning.pytorch.callbacks import ProgressBar

log = logging.getLogger(__name__)


def is_terminal() -> bool:
    """Whether standard error, where the progress bar draws, is a terminal."""
    return sys.stderr.isatty()


class LineProgress(ProgressBar):
    """About ``lines`` progress lines per fit, through ftlab's logger (so also into the job's run.log)."""

    def __init__(self, lines: int = 10):
        super().__init__()
        self.lines, self._enabled, self._start, self._first_step, self._last = lines, True, 0.0, 0, -1

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._first_step = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        total, step = trainer.estimated_stepping_batches, trainer.global_step
        every = max(1, int(total // self.lines)) if total != float("inf") else 50
        if not (self._enabled and trainer.is_global_zero) or step == self._last or (step % every and step != total):
            return
        self._last = step
        loss = trainer.progress_bar_metrics.get("train/loss")
        rate = (step - self._first_step) / max(time.perf_counter() - self._start, 1e-9)
        of_total = f"/{int(total)} ({100 * step / total:.0f}%)" if total != float("inf") else ""
        log.info("step %d%s, epoch %d%s, %.2f steps/s", step, of_total, trainer.current_epoch,
                 f", train/loss {float(loss):.4f}" if loss is not None else "", rate)
