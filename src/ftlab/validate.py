"""Validate a composed config before anything heavy loads: each owner of a setting checks it, this gathers them and
raises once (``ConfigError``: every problem with its key, value and the valid choices), in two rounds:

1. the settings (``validate_settings``): each value, against the others, the data files and the model's files. No
   heavy library loads for these, so a wrong setting is reported in about a second;
2. once the settings are sound, what they ask of the libraries, this machine and the model (``validate_runtime``):
   the classes the config names (optimizer, trainer, loggers, callbacks), the devices, and the architecture on the
   meta device, against which the strategy and ``layer_decay`` are checked. This imports PyTorch, Lightning and
   transformers (seconds).
"""

from __future__ import annotations

import os

from omegaconf import DictConfig

from ftlab.core.checks import Checker, ConfigError, is_int
from ftlab.core.extras import extra_problem
from ftlab.core.metric_names import monitor_mode
from ftlab.core.trainer_settings import CUDA_ONLY_PRECISIONS, PRECISIONS
from ftlab.core.writable import unwritable
from ftlab.data.sampler_options import check_group_by_length
from ftlab.deploy.quantize import check_onnx_options
from ftlab.model.architecture import MODEL_OPTIONS, check_model, check_model_files
from ftlab.planning.device_memory import check_device_memory
from ftlab.probes.retention_source import check_retention
from ftlab.strategies import check_strategy
from ftlab.sweeps.search_space import SEARCH_OPTIONS
from ftlab.sweeps.trial_options import check_trial
from ftlab.tasks.readers import COMMON_DATA_OPTIONS, check_splits
from ftlab.tasks.specs import TASK_SPECS
from ftlab.training.checkpoint_retention import check_keep_checkpoints
from ftlab.training.compile_options import check_compile
from ftlab.training.optimizer_options import check_layer_decay, check_optimizer, check_optimizer_arguments
from ftlab.training.prefix_cache_options import check_cache_frozen
from ftlab.training.trainer_arguments import check_trainer_arguments
from ftlab.training.validation_options import check_curve_points

GROUPS = ("model", "data", "optimizer", "scheduler", "strategy", "trainer", "logger", "callbacks")
TOP_LEVEL = (*GROUPS, "task", "lr", "layer_decay", "seed", "batch_size", "eval_batch_size", "max_length", "monitor",
             "monitor_mode", "resume", "keep_checkpoints", "export_onnx", "onnx", "eval_before", "plan_only",
             "output_dir", "curve_points", "cache_frozen", "cache_frozen_memory", "retention", "device_memory",
             "search")  # search: options of hparams_search=optuna

__all__ = ["ConfigError", "validate_config", "validate_runtime", "validate_settings"]


def _check_trainer_settings(c: Checker) -> None:
    """The trainer's processes, precision and DeepSpeed stage are valid ones (whether this machine runs them is
    ``_check_devices``'); a plan (``plan_only``) describes the devices of another machine, so only the precision's name
    is checked for it."""
    if c.get("trainer.num_nodes") is not None:
        c.positive("trainer.num_nodes", int)
    c.choice("trainer.precision", (*PRECISIONS, None))
    if c.get("plan_only"):
        return
    if c.trainer.deepspeed:
        if problem := extra_problem("deepspeed"):
            c.fail("trainer.strategy", problem)
        if c.trainer.deepspeed_stage == 3:
            # ZeRO-3 shards the weights themselves; the export gathers FSDP shards only.
            c.fail("trainer.strategy", "ZeRO stage 3 is not supported; valid choices: deepspeed_stage_1, "
                                       "deepspeed_stage_2, or trainer=fsdp to shard the weights")


def _check_devices(c: Checker) -> None:
    """Precision and accelerator must be runnable here (fp16 has no CPU kernels for training); not for a plan."""
    if c.get("plan_only"):
        return
    import torch  # seconds to import: only once the settings are sound

    accelerator = str(c.get("trainer.accelerator") or "auto")
    has_cuda = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not has_cuda:
        c.fail("trainer.accelerator", "no CUDA GPU is visible here; valid choices: cpu, auto")
    devices = str(c.get("trainer.devices"))
    if devices.isdigit():
        on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and has_cuda)
        here, unit = (torch.cuda.device_count(), "CUDA GPU(s)") if on_gpu else (os.cpu_count() or 1, "CPU core(s)")
        if not 1 <= int(devices) <= here:
            c.fail("trainer.devices", f"this machine has {here} {unit}; valid: 1..{here} (one process per device)")
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not has_cuda)
    if on_cpu and c.get("trainer.precision") in CUDA_ONLY_PRECISIONS:
        c.fail("trainer.precision", "float16 training needs a CUDA GPU; on CPU use bf16-mixed or 32-true")


def _check_data(c: Checker) -> None:
    task = TASK_SPECS[c.get("task")]
    if not c.choice("data.source", task.sources):
        return
    task.check_data(c)
    check_splits(c)
    check_group_by_length(c)


def _check_output_dir(c: Checker) -> None:
    """The job directory can be created and written (checked on the nearest existing parent)."""
    out = c.get("output_dir")
    if out is None:
        return
    if (problem := unwritable(str(out))) is not None:
        c.fail("output_dir", f"{problem}; choose another hydra.run.dir / output_dir")


def _check_monitor(c: Checker) -> None:
    """``monitor`` is one the task logs, and ``monitor_mode`` is the direction in which it improves."""
    task = TASK_SPECS[c.get("task")]
    if c.choice("monitor", tuple(task.monitors)) and c.choice("monitor_mode", ("min", "max")):
        expected = monitor_mode(c.get("monitor"))
        if c.get("monitor_mode") != expected:
            better = "lower" if expected == "min" else "higher"
            c.fail("monitor_mode", f"{c.get('monitor')} is better when {better}: {c.get('monitor_mode')} would keep "
                                   f"the worst checkpoint; valid: {expected}")


def _check_keys(c: Checker) -> None:
    """No unknown key anywhere ftlab reads: a typo or a key another choice owns is an error, never ignored. The keys
    of the groups that name a class (trainer, loggers, callbacks) are its arguments: ``_check_target_arguments``."""

    c.unknown_keys("", TOP_LEVEL, "ftlab's config")
    c.unknown_keys("model", MODEL_OPTIONS, "the model group")
    c.unknown_keys("search", SEARCH_OPTIONS, "hparams_search")
    # Any task's data keys are accepted (a data group written for one task may carry another's columns by default);
    # a key no task reads is an error.
    data_options = {*COMMON_DATA_OPTIONS, *(k for t in TASK_SPECS.values() for k in t.data_options)}
    c.unknown_keys("data", data_options, "the data group")
    check_trainer_arguments(c)


def _check_target_arguments(c: Checker) -> None:
    """The keys of the optimizer, trainer, logger and callback groups are arguments of the class each names (which
    imports it: torch, Lightning)."""
    check_optimizer_arguments(c)
    c.target_arguments("trainer")
    for group in ("logger", "callbacks"):
        for name, spec in (c.get(group) or {}).items():
            if spec is not None:
                c.target_arguments(f"{group}.{name}")


def _check_settings(c: Checker) -> None:
    """The first round: every setting, against the others, the data files and the model's files, without loading
    PyTorch, Lightning or transformers."""
    check_optimizer(c)
    for key in ("batch_size", "max_length"):
        c.positive(key, int)
    if c.get("eval_batch_size") is not None:
        c.positive("eval_batch_size", int)
    seed = c.get("seed")
    if not is_int(seed) or not 0 <= seed < 2**32:
        c.fail("seed", f"must be an integer in 0..{2**32 - 1} (what numpy and Lightning can seed)")
    if c.choice("task", tuple(TASK_SPECS)):
        _check_monitor(c)
    check_onnx_options(c)
    check_curve_points(c)
    check_cache_frozen(c)
    check_retention(c)
    check_compile(c)
    check_keep_checkpoints(c)
    check_trial(c)
    check_device_memory(c)
    _check_keys(c)
    _check_output_dir(c)
    if c.get("trainer._target_") is None:
        c.fail("trainer._target_", "the trainer group must configure lightning.Trainer")
    _check_trainer_settings(c)
    if c.get("export_onnx"):
        if problem := extra_problem("onnx"):
            c.fail("export_onnx", problem)
    if c.get("task") in TASK_SPECS:
        _check_data(c)
        check_model_files(c)
        check_strategy(c, None)  # the options alone: the architecture is built in the second round
        check_layer_decay(c, None)


def _check_runtime(c: Checker) -> None:
    """The second round, for sound settings: the classes the config names, this machine's devices, and the model's
    architecture (meta device) with the strategy and ``layer_decay`` on it."""
    _check_target_arguments(c)
    _check_devices(c)
    model = check_model(c)
    check_strategy(c, model)
    check_layer_decay(c, model)


def _raise_problems(c: Checker) -> None:
    if c.problems:
        raise ConfigError(c.problems)


def validate_settings(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` listing every problem with the settings of ``cfg`` (key, bad value, valid choices), found
    without loading PyTorch, Lightning or transformers: the first round of ``validate_config``."""
    c = Checker(cfg)
    _check_settings(c)
    _raise_problems(c)


def validate_runtime(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` listing every problem of a config that ``validate_settings`` passed with the classes it
    names, this machine and the model: the second round of ``validate_config``."""
    c = Checker(cfg)
    _check_runtime(c)
    _raise_problems(c)


def validate_data(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` listing the problems with ``cfg``'s data alone (source, files, columns, splits): for a
    tool that rebuilds a finished job's splits from its saved config, whose data may have moved since."""
    c = Checker(cfg)
    _check_data(c)
    _raise_problems(c)


def validate_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` listing every problem in ``cfg`` (key, bad value, valid choices): the problems with its
    settings, or, when they are sound, those with what they ask of the libraries, this machine and the model."""
    c = Checker(cfg)
    _check_settings(c)
    if not c.problems:
        _check_runtime(c)
    _raise_problems(c)
