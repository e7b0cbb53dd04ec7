"""The optimizer and LR schedule of a job: parameter groups (weight decay, layer-wise LR decay, unfreezing stages) and
the scheduler; the checks of every setting they read are ``optimizer_options.py``."""

from __future__ import annotations

import math
from typing import Any

from hydra.utils import instantiate
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ftlab.model.anatomy import find_parts, param_name
from ftlab.strategies import Selection


def is_norm(module: nn.Module) -> bool:
    """Normalisation layers by type name: LayerNorm, RMSNorm (LLaMA), GroupNorm, BatchNorm, ..."""
    return "norm" in type(module).__name__.lower()


def no_decay_names(model: nn.Module) -> set[str]:
    """Biases and normalisation weights, found by module type rather than name.

    Matching by type catches LLaMA's RMSNorm weights (``input_layernorm``, ``norm``) as well as BERT's ``LayerNorm``.
    """
    names = set()
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            if is_norm(module) or name == "bias":
                names.add(param_name(f"{module_name}.{name}" if module_name else name))
    return names


def param_groups(model: nn.Module, weight_decay: float, lr: float | None = None, layer_decay: float | None = None,
                 stages: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Trainable parameters in optimizer groups: decay / no-decay, and per model part when needed.

    With ``layer_decay`` (discriminative fine-tuning) the group of block i gets ``lr * layer_decay**depth`` where
    depth counts blocks from the top (head 0, top block 1, ..., embeddings L+1). With ``stages`` (gradual
    unfreezing) each group records the stage at which it starts learning.
    """
    unit_of, depth = {}, {}
    if layer_decay is not None or stages:
        units = find_parts(model).groups()
        n_blocks = len(units) - 2
        for unit, names in units.items():
            unit_of.update(dict.fromkeys(names, unit))
            depth[unit] = 0 if unit == "head" else n_blocks + 1 if unit == "embeddings" else n_blocks - int(
                unit.split(".")[1])
    no_decay = no_decay_names(model)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        name = param_name(name)  # as in the unwrapped model, also under FSDP
        unit = unit_of.get(name, "all")
        kind = "no_decay" if name in no_decay else "decay"
        group = groups.setdefault((unit, kind), {
            "params": [], "weight_decay": 0.0 if kind == "no_decay" else weight_decay, "group": kind,
            "name": kind if unit == "all" else f"{unit}/{kind}",  # LearningRateMonitor labels curves with it
            "unit": unit, "stage": (stages or {}).get(name, 0)})
        if layer_decay is not None:
            group["lr"] = lr * layer_decay ** depth[unit]
        group["params"].append(param)
    return list(groups.values())


def gate_stages(scheduler: LambdaLR, stages: list[int], steps_per_stage: int) -> LambdaLR:
    """Multiply each group's LR schedule by 0 until its unfreezing stage is reached.

    Parameters waiting for their stage keep ``requires_grad`` and sit at LR 0, so an AdamW step leaves them
    bit-identical and DDP's gradient buckets never change.
    """
    def gated(fn, stage):
        return lambda step: fn(step) if step // steps_per_stage >= stage else 0.0

    lambdas = [gated(fn, stage) for fn, stage in zip(scheduler.lr_lambdas, stages)]
    return LambdaLR(scheduler.optimizer, lambdas)


def build_optimizer(model: nn.Module, optimizer: dict[str, Any], scheduler: dict[str, Any] | None,
                    selection: Selection, layer_decay: float | None, trainer):
    """The optimizer over ``model``'s trainable parameters and, unless ``scheduler.name`` is none, a per-step LR
    schedule in Lightning's ``configure_optimizers`` format."""
    groups = param_groups(model, float(optimizer.get("weight_decay", 0.0)), optimizer.get("lr"), layer_decay,
                          selection.stages if selection.num_stages > 1 else None)
    # _partial_ keeps the parameter tensors out of Hydra's config merge (which would copy them).
    opt = instantiate(optimizer, _partial_=True, _convert_="all")(groups)
    sched_cfg = dict(scheduler or {})
    name = sched_cfg.get("name") or "none"
    if name == "none" and selection.num_stages == 1:
        return opt
    from transformers import get_scheduler

    total = int(trainer.estimated_stepping_batches)
    warmup = sched_cfg.get("warmup_steps")
    if warmup is None:
        warmup = math.ceil(float(sched_cfg.get("warmup_ratio") or 0.0) * total)
    schedule = get_scheduler("constant" if name == "none" else name, opt, num_warmup_steps=int(warmup),
                             num_training_steps=total)
    if selection.num_stages > 1:
        steps = selection.every
        if selection.unit == "epoch":
            steps *= math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        schedule = gate_stages(schedule, [g["stage"] for g in opt.param_groups], steps)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
