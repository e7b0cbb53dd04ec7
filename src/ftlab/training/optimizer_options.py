"""The settings the optimizer and its schedule read (``lr``, ``optimizer.*``, ``scheduler.*``, ``layer_decay``): what
is valid, the one learning rate, and their checks; building the optimizer is ``optimization.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from ftlab.core.checks import Checker
from ftlab.model.anatomy import ArchitectureError, find_parts

if TYPE_CHECKING:
    from torch import nn

SCHEDULER_OPTIONS = ("name", "warmup_ratio", "warmup_steps")
SCHEDULERS = ("linear", "cosine", "constant_with_warmup", "constant", "cosine_with_restarts", "polynomial", "none")
MOVED = {"layer_decay": "layer-wise LR decay is the top-level layer_decay"}  # optimizer keys that live elsewhere


def learning_rate(cfg) -> float:
    """The learning rate the optimizer trains with: ``optimizer.lr`` (which the top-level ``lr`` feeds by default)."""
    return float(cfg["optimizer"]["lr"])


def lr_key(cfg) -> str:
    """The key a user sets the learning rate with: ``lr`` while ``optimizer.lr`` follows it, else ``optimizer.lr``."""
    raw = OmegaConf.to_container(cfg.optimizer, resolve=False).get("lr")
    return "lr" if raw == "${lr}" else "optimizer.lr"


def check_optimizer(c: Checker) -> None:
    """The learning rate and the schedule are sane (the optimizer's own keys: ``check_optimizer_arguments``)."""
    cfg = c.cfg
    if "lr" in cfg.get("optimizer", {}):
        c.positive(lr_key(cfg))
    else:
        c.fail("optimizer.lr", "required (the top-level lr feeds it: lr: ${lr})")
    c.unknown_keys("scheduler", SCHEDULER_OPTIONS, "the scheduler")
    c.choice("scheduler.name", SCHEDULERS)
    if c.get("scheduler.warmup_ratio") is not None:
        c.fraction("scheduler.warmup_ratio")
    steps = c.get("scheduler.warmup_steps")
    if steps is not None and not (isinstance(steps, int) and steps >= 0):
        c.fail("scheduler.warmup_steps", "must be an integer >= 0 or null")


def check_optimizer_arguments(c: Checker) -> None:
    """``optimizer`` names an importable optimizer class and only its arguments (importing it loads torch)."""
    c.target_arguments("optimizer", moved=MOVED)


def check_layer_decay(c: Checker, model: nn.Module | None) -> None:
    """``layer_decay`` is in (0, 1] or null, and needs a model whose blocks can be found (None: not built yet, or
    could not be)."""

    if c.get("layer_decay") is None:
        return
    if not c.fraction("layer_decay", low_open=True) or model is None:
        return
    try:
        find_parts(model)
    except ArchitectureError as err:
        c.fail("layer_decay", str(err))
