"""One fine-tuning job, start to finish: validate -> data -> model + freezing -> fit -> validate/test best -> export."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from ftlab.core.trainer_settings import trainer_settings
from ftlab.data.datamodule import FineTuneData
from ftlab.deploy.card import write_model_card
from ftlab.deploy.curves import write_curves
from ftlab.deploy.export import export_model, format_metrics, write_metrics
from ftlab.deploy.release import JobTestSplit, release
from ftlab.model.loading import check_max_length, load_tokenizer
from ftlab.model.local_files import config_only
from ftlab.planning.cost import format_plan, job_plan, planned_model, write_plan
from ftlab.planning.devices import device_section
from ftlab.probes.retention import describe as describe_retention
from ftlab.probes.retention import retention_callbacks, retention_metrics
from ftlab.strategies import strategy_label
from ftlab.sweeps.pruning import TrialPruning, trial_pruning, write_pruned
from ftlab.tracking.loggers import build_loggers, finish_loggers
from ftlab.training.callbacks import BudgetCurve, SpeedMonitor, build_callbacks
from ftlab.training.checkpoint_retention import disk_plan, keep_policy, prune_checkpoints
from ftlab.training.checkpointing import SafeCheckpointIO
from ftlab.training.distributed import is_fsdp, job_scoped_distributed, prepare_rank_relaunch
from ftlab.training.module import FineTuneModule
from ftlab.training.optimizer_options import learning_rate
from ftlab.training.prefix_cache import build_prefix_cache
from ftlab.training.result_guard import check_finite, check_steps
from ftlab.training.resume import Resumption
from ftlab.training.resumed_job import LAST_CHECKPOINT, last_checkpoint, resume_config
from ftlab.training.validation_schedule import (
    CurvePoints,
    check_interval_fits,
    keep_patience_in_epochs,
    validation_interval,
)
from ftlab.validate import validate_runtime, validate_settings

log = logging.getLogger(__name__)


def _plain(node) -> Any:
    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one job described by a composed config and return its final metrics; a job directory that already holds
    ``checkpoints/last.ckpt`` (a requeued SLURM job, or ``resume=<job dir>``) continues from it."""
    cfg = resume_config(cfg)
    validate_settings(cfg)
    return train_checked(cfg)


def train_checked(cfg: DictConfig) -> dict[str, Any]:
    """``train`` for the config of the job itself (``resume_config`` applied) once ``validate_settings`` passed it:
    ``run.py`` checks the settings before it imports this module, which takes seconds."""
    validate_runtime(cfg)
    cfg.lr = learning_rate(cfg)  # one value everywhere, also when the user set optimizer.lr itself
    L.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    settings = trainer_settings(cfg.trainer)
    if cfg.get("plan_only") and config_only(_plain(cfg.model)):  # too big for here: planned from config.json alone
        plan = job_plan(cfg, *planned_model(_plain(cfg.model), cfg.task, _plain(cfg.strategy), settings))
        return {"plan": _publish_plan(cfg, plan, out_dir)}

    tokenizer = load_tokenizer(_plain(cfg.model), cfg.task)
    check_max_length(tokenizer, cfg.max_length)
    datamodule = FineTuneData(_plain(cfg.data), tokenizer, cfg.max_length, cfg.batch_size, cfg.eval_batch_size,
                              cfg.seed, task=cfg.task, index_train=bool(cfg.get("cache_frozen")))
    datamodule.prepare_data()
    datamodule.setup("fit")
    check_interval_fits(cfg.trainer, datamodule.train_batches(), settings.device_count)
    module = FineTuneModule(
        model=_plain(cfg.model), strategy=_plain(cfg.strategy), optimizer=_plain(cfg.optimizer),
        scheduler=_plain(cfg.scheduler), label_names=datamodule.label_names, task=cfg.task,
        layer_decay=cfg.layer_decay, tokenizer=tokenizer)
    plan = job_plan(cfg, module.model, module.selection)
    if cfg.get("cache_frozen"):
        module.prefix_cache, plan["frozen_prefix_cache"] = build_prefix_cache(cfg, datamodule, module.model)
    _publish_plan(cfg, plan, out_dir)
    if rank_zero_only.rank == 0 and cfg.strategy.name == "pattern":
        print("[ftlab] trainable parameters:\n  " + "\n  ".join(sorted(module.trainable_names)))
    if cfg.get("plan_only"):
        return {"plan": plan, **module.param_counts}

    if settings.spawns_processes:
        prepare_rank_relaunch()
        with job_scoped_distributed():
            return _run(cfg, datamodule, module, plan, out_dir)
    return _run(cfg, datamodule, module, plan, out_dir)


def _publish_plan(cfg: DictConfig, plan: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Print and save the plan (rank 0); with ``plan_only``, per device and the fits table of the contenders too."""
    plan.setdefault("disk_bytes", disk_plan(plan["memory_bytes"], keep_policy(cfg)))
    extra = ""
    if cfg.get("plan_only"):
        plan["devices"], extra = device_section(cfg, plan)
    if rank_zero_only.rank == 0:
        write_plan(plan, out_dir / "plan.json")
        label = strategy_label(_plain(cfg.strategy))
        print(f"[ftlab] strategy {label}: plan (saved to {out_dir / 'plan.json'})\n{format_plan(plan)}"
              + (f"\n{extra}" if extra else ""))
    return plan


def _run(cfg: DictConfig, datamodule: FineTuneData, module: FineTuneModule, plan: dict[str, Any],
         out_dir: Path) -> dict[str, Any]:
    """Build the trainer, fit and evaluate, write the artifacts; the loggers are always closed."""
    loggers = build_loggers(_plain(cfg.get("logger")), str(out_dir))
    failed = True
    try:
        trainer, speed = build_trainer(cfg, loggers, datamodule, plan.get("flops_per_sample"))
        for logger in loggers:
            logger.log_hyperparams({**_plain(cfg), **module.param_counts, "data/split_sizes": datamodule.split_sizes,
                                    "plan": plan})
        metrics = fit_and_evaluate(cfg, trainer, speed, datamodule, module, out_dir)
        if not metrics.get("search/pruned"):
            write_artifacts(cfg, trainer, datamodule, module, metrics, out_dir)
        elif trainer.is_global_zero:  # a pruned trial is over too (pruned.json written): it resumes nothing
            prune_checkpoints(out_dir / "checkpoints", keep_policy(cfg))
        failed = False
        return metrics
    finally:
        finish_loggers(loggers, failed)


def build_trainer(cfg: DictConfig, loggers: list, datamodule: FineTuneData,
                  flops_per_sample: int | None = None) -> tuple[L.Trainer, SpeedMonitor]:
    """``lightning.Trainer`` from ``cfg.trainer`` with the configured callbacks, ftlab's speed monitor, the budget
    curve and the interruption / resumption callback."""
    speed = SpeedMonitor()
    callbacks = build_callbacks(
        _plain(cfg.get("callbacks")), has_logger=bool(loggers),
        progress_bar=cfg.trainer.get("enable_progress_bar", True) is not False)
    callbacks += [speed, BudgetCurve(Path(cfg.output_dir) / "curve.csv", speed, cfg.monitor, flops_per_sample)]
    if cfg.trainer.get("enable_checkpointing", True) is not False:  # Lightning refuses any Checkpoint callback then
        callbacks.append(Resumption(Path(cfg.output_dir) / LAST_CHECKPOINT, datamodule))
    callbacks += retention_callbacks(cfg, datamodule)  # held-out general text before and after (retention.source)
    if (pruning := trial_pruning(cfg)) is not None:
        callbacks.append(pruning)
    plugins = []
    if not trainer_settings(cfg.trainer).deepspeed:  # DeepSpeed writes its own checkpoint folders
        plugins.append(SafeCheckpointIO())
    if "SLURM_JOB_ID" in os.environ:
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        # Requeueing belongs to submitit (SIGUSR2) and the Resumption callback, not to Lightning's SIGUSR1 handler.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    extra = {"plugins": plugins} if plugins and "plugins" not in cfg.trainer else {}
    if (interval := validation_interval(cfg.trainer, cfg.get("curve_points"))) is not None:
        extra["val_check_interval"] = interval
        per_epoch = round(1 / interval)
        keep_patience_in_epochs(callbacks, per_epoch)
        callbacks.append(CurvePoints(per_epoch))
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, _convert_="all", **extra)
    return trainer, speed


def fit_and_evaluate(cfg: DictConfig, trainer: L.Trainer, speed: SpeedMonitor, datamodule: FineTuneData,
                     module: FineTuneModule, out_dir: Path) -> dict[str, Any]:
    """Fit (resuming from the job's last checkpoint if any), then validate and test the best checkpoint.

    Returns every final number of the job; the module holds the best weights afterwards.
    """
    resume_from = last_checkpoint(out_dir)
    if resume_from:
        log.info("resuming from %s", resume_from)
        # The Resumption callback restores the position in the epoch; Lightning cannot see that and would
        # warn that the dataloader is not resumable.
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before")
    if cfg.strategy.get("frozen_dropout") is False:  # the frozen modules' eval mode is the setting, not a slip
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
    before = {}
    if cfg.get("eval_before") and not resume_from:
        # The untuned checkpoint on the same test set: the "before" of the before/after comparison.
        before = {f"before/{k}": v for k, v in trainer.test(module, datamodule=datamodule, verbose=False)[0].items()}
        if trainer.is_global_zero:  # now, before the fit's own output: it is the "before"
            print(f"[ftlab] before fine-tuning: {format_metrics(before, 'before/test/')}")
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    pruning = next((c for c in trainer.callbacks if isinstance(c, TrialPruning)), None)
    if pruning is not None and pruning.pruned_at is not None:  # a pruned search trial has no test result
        return write_pruned(out_dir, pruning, speed.fit_time) if trainer.is_global_zero else {"search/pruned": True}
    check_steps(trainer.global_step)
    saver = next((c for c in trainer.checkpoint_callbacks  # the one keeping the best (not the periodic last.ckpt)
                  if isinstance(c, ModelCheckpoint) and c.monitor and c.save_top_k != 0), None)
    best = saver.best_model_path if saver is not None else ""
    ckpt = best or None  # None: evaluate the weights as they are (no checkpoint was written)
    val = trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]
    test = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]
    return {
        **val, **test, **before, **retention_metrics(trainer.callbacks), **module.param_counts,
        **{f"test/{name}": value for name, value in module.test_details.items()},
        "task": cfg.task,
        "strategy": cfg.strategy.name,
        "strategy_label": strategy_label(_plain(cfg.strategy)),
        "lr": cfg.lr,
        "monitor": cfg.monitor,
        "train_time_s": speed.fit_time,
        "train_samples_per_s": speed.samples_per_s,
        "peak_memory_mb": speed.peak_memory / 2**20,
        "global_step": trainer.global_step,
        "resumed_from": str(resume_from) if resume_from else None,
        "best_checkpoint": best,
        "data/split_sizes": datamodule.split_sizes,
        "data/test_examples": module.test_examples,  # fewer than the test split under trainer.limit_test_batches
        "data/fingerprint": datamodule.data_fingerprint(),
    }


def write_artifacts(cfg: DictConfig, trainer: L.Trainer, datamodule: FineTuneData, module: FineTuneModule,
                    metrics: dict[str, Any], out_dir: Path) -> None:
    """On rank 0: ``model/`` (with its card), ``onnx/`` if asked, ``metrics.json``, the loggers' final metrics."""
    # FSDP gathers a sharded model's full state dict on every rank, into rank 0.
    state = trainer.strategy.lightning_module_state_dict() if is_fsdp(trainer.strategy) else None
    if not trainer.is_global_zero:
        return
    check_finite(state.items() if state is not None else module.model.named_parameters())
    export_model(module, out_dir / "model", state, max_length=cfg.max_length)
    if cfg.get("export_onnx"):  # parity checked on real test inputs; int8 compared with fp32 on the test split
        onnx = _plain(cfg.get("onnx")) or {}
        test = JobTestSplit(module.task, datamodule.label_names, datamodule.datasets["test"],
                            module.task.collator(module.tokenizer), datamodule.eval_batch_size, module.tokenizer)
        metrics.update(release(out_dir / "model", out_dir / "onnx", test.texts(), onnx.get("quantize"),
                               onnx.get("tolerance", 1.0), test))
    metrics["keep_checkpoints"] = keep_policy(cfg)
    curves = metrics.pop("test/curves", None)  # per-class ROC / PR points: their own file, not metrics.json
    if curves:
        write_curves(curves, metrics, out_dir)
    write_metrics(out_dir / "metrics.json", metrics)
    write_model_card(out_dir / "model", _plain(cfg), metrics)
    for logger in trainer.loggers:
        logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                           step=trainer.global_step)
    prune_checkpoints(out_dir / "checkpoints", metrics["keep_checkpoints"])  # the results are written: safe now
    log.info("val:  %s", format_metrics(metrics, "val/"))
    print(f"[ftlab] test: {format_metrics(metrics, 'test/')}  (outputs: {out_dir})")
    if "retention/source" in metrics:
        print(f"[ftlab] {describe_retention(metrics)}")
