"""Validate a composed config before anything heavy loads: each owner of a setting checks it, this gathers them
and raises once (``ConfigError``: every problem with its key, value and the valid choices)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from omegaconf import DictConfig

from ftlab.assets import resolve_path
from ftlab.checks import Checker, ConfigError
from ftlab.optimization import check_layer_decay, check_optimizer
from ftlab.strategies import check_strategy
from ftlab.tasks import TASKS

PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
CUDA_ONLY_PRECISIONS = ("16-mixed", "16", "16-true")
ONNX_MODULES = ("onnx", "onnxruntime", "onnxscript")

__all__ = ["ConfigError", "validate_config"]


def _check_model(c: Checker):
    """Build the architecture on the meta device (no weights) so strategies can be checked against real names."""
    key = "model.pretrained_model_name_or_path"
    uri = c.get(key)
    if uri is None:
        c.fail(key, "required: a local checkpoint directory or a Hugging Face hub name")
        return None
    try:
        path = resolve_path(str(uri))
    except FileNotFoundError as err:
        c.fail(key, str(err))
        return None
    gguf = c.get("model.gguf_file")
    if gguf is not None and not Path(path, str(gguf)).is_file():
        c.fail("model.gguf_file", f"no such file in {path}")
        return None
    if gguf is None and (os.path.isabs(path) or path.startswith(".")):
        if not Path(path, "config.json").exists():
            c.fail(key, f"no checkpoint (config.json) at {path}")
            return None
    from ftlab.models import meta_model

    try:
        return meta_model(c.plain("model"), task=c.get("task"))
    except Exception as err:  # hub names that cannot be reached, unknown architectures, broken configs
        c.fail(key, f"cannot load its config: {type(err).__name__}: {str(err).splitlines()[0]}")
        return None


def _check_hardware(c: Checker) -> None:
    """Precision and accelerator must be runnable here (fp16 has no CPU kernels for training)."""
    import torch

    accelerator = str(c.get("trainer.accelerator") or "auto")
    has_cuda = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not has_cuda:
        c.fail("trainer.accelerator", "no CUDA GPU is visible here; valid choices: cpu, auto")
    precision = str(c.get("trainer.precision") or "32-true")
    if c.choice("trainer.precision", PRECISIONS):
        on_cpu = accelerator == "cpu" or (accelerator == "auto" and not has_cuda)
        if on_cpu and precision in CUDA_ONLY_PRECISIONS:
            c.fail("trainer.precision", "float16 training needs a CUDA GPU; on CPU use bf16-mixed or 32-true")
    strategy = c.get("trainer.strategy")
    spec = str(strategy).lower()
    if "deepspeed" in spec:
        if importlib.util.find_spec("deepspeed") is None:
            c.fail("trainer.strategy", "DeepSpeed is not installed: pip install -e '.[deepspeed]'")
        stage = strategy.get("stage") if hasattr(strategy, "get") else None
        if "stage_3" in spec or stage == 3:
            # ZeRO-3 shards the weights themselves; the export gathers FSDP shards only.
            c.fail("trainer.strategy", "ZeRO stage 3 is not supported; valid choices: deepspeed_stage_1, "
                                       "deepspeed_stage_2, or trainer=fsdp to shard the weights")


def _check_data(c: Checker) -> None:
    from ftlab.tasks.readers import check_splits

    task = TASKS[c.get("task")]
    if not c.choice("data.source", task.sources):
        return
    task.check_data(c)
    check_splits(c)


def validate_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` listing every problem in ``cfg`` (key, bad value, valid choices)."""
    c = Checker(cfg)
    check_optimizer(c)
    for key in ("batch_size", "max_length"):
        c.positive(key, int)
    if c.get("eval_batch_size") is not None:
        c.positive("eval_batch_size", int)
    if not isinstance(c.get("seed"), int):
        c.fail("seed", "must be an integer")
    if c.choice("task", tuple(TASKS)):
        c.choice("monitor", TASKS[c.get("task")].monitors)
    if c.get("export_onnx") and c.get("task") != "text_classification":
        c.fail("export_onnx", "ONNX export is implemented for task=text_classification only")
    c.choice("monitor_mode", ("min", "max"))
    if c.get("trainer._target_") is None:
        c.fail("trainer._target_", "the trainer group must configure lightning.Trainer")
    _check_hardware(c)
    if c.get("export_onnx"):
        missing = [m for m in ONNX_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            c.fail("export_onnx", f"needs the onnx extra ({', '.join(missing)} missing): pip install -e \".[onnx]\"")
    if c.get("task") in TASKS:
        _check_data(c)
        model = _check_model(c)
        check_strategy(c, model)
        check_layer_decay(c, model)
    if c.problems:
        raise ConfigError(c.problems)
