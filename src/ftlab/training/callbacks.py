"""Callbacks ftlab adds to every run, and building the configured Lightning callbacks."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate

from ftlab.core.atomic_files import atomic_write
from ftlab.core.saved_config import upgrade_targets
from ftlab.training.line_progress import LineProgress, is_terminal


def current_rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


class SpeedMonitor(L.Callback):
    """Measures training wall time, throughput (samples/s over optimisation steps, all ranks) and peak memory.

    Peak memory is the accelerator's peak allocation on GPU, else the peak resident set size sampled at
    every training step of this fit (the process-wide maximum would mix jobs of an in-process sweep).
    """

    def __init__(self) -> None:
        self.peak_memory = 0
        self.samples = 0
        self.step_time = 0.0
        self.fit_time = 0.0
        self._fit_start = 0.0
        self._batch_start = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._fit_start = time.perf_counter()

    def on_fit_end(self, trainer, pl_module) -> None:
        self.fit_time = time.perf_counter() - self._fit_start

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.step_time += time.perf_counter() - self._batch_start
        self.samples += len(batch["labels"]) * trainer.world_size
        if pl_module.device.type == "cuda":
            self.peak_memory = torch.cuda.max_memory_allocated(pl_module.device)
        else:
            self.peak_memory = max(self.peak_memory, current_rss_bytes())

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.step_time if self.step_time else 0.0

    def state_dict(self) -> dict[str, Any]:
        # Saved in checkpoints: a resumed job's samples and training time continue where they stopped.
        return {"samples": self.samples, "step_time": self.step_time}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.samples, self.step_time = state["samples"], state["step_time"]

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.loggers:
            pl_module.log("train/samples_per_s", self.samples_per_s)


class BudgetCurve(L.Callback):
    """``curve.csv``: at every validation during fit, the samples and training time spent so far (validation
    excluded), the estimated training FLOPs and the monitored metric: the job's quality against its budget.

    A resumed job keeps the rows up to its checkpoint's step and continues them.
    """

    def __init__(self, path: Path, speed: SpeedMonitor, monitor: str, flops_per_sample: int | None):
        self.path, self.speed, self.monitor, self.flops_per_sample = Path(path), speed, monitor, flops_per_sample
        self.fields = ("step", "epoch", "samples", "train_time_s", "flops", monitor)

    def on_train_start(self, trainer, pl_module) -> None:  # after a checkpoint restored the step
        if not trainer.is_global_zero:
            return
        rows = self._read() if trainer.ckpt_path else []
        self._write([r for r in rows if int(r["step"]) <= trainer.global_step])

    def on_validation_end(self, trainer, pl_module) -> None:
        from lightning.pytorch.trainer.states import TrainerFn

        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or value is None:
            return
        if trainer.is_global_zero:
            flops = self.speed.samples * self.flops_per_sample if self.flops_per_sample else ""
            self._write([*self._read(), dict(zip(self.fields, (
                trainer.global_step, trainer.current_epoch, self.speed.samples, round(self.speed.step_time, 4),
                flops, float(value))))])

    def _read(self) -> list[dict[str, str]]:
        import csv

        if not self.path.exists():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def _write(self, rows: list[dict[str, Any]]) -> None:
        import csv

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.fields)
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(self.path, write)


def build_callbacks(cfg: dict[str, Any] | None, has_logger: bool, progress_bar: bool = True) -> list[L.Callback]:
    """Instantiate the configured callbacks (entries set to null are dropped).

    The LR monitor needs a logger and a progress bar callback conflicts with
    ``trainer.enable_progress_bar=false``, so each is dropped when its condition is off.
    """
    from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar

    callbacks = []
    for spec in (cfg or {}).values():
        if spec is None:
            continue
        callback = instantiate(upgrade_targets(spec), _convert_="all")  # a requeued job's config may predate a move
        if isinstance(callback, LearningRateMonitor) and not has_logger:
            continue
        if isinstance(callback, ProgressBar) and not progress_bar:
            continue
        if isinstance(callback, ProgressBar) and not is_terminal():  # a log file: lines, not a redrawn bar
            callback = LineProgress()
        callbacks.append(callback)
    return callbacks
