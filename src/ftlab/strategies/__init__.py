"""Strategies: which parameters train. Freezing strategies (``freezing.py``) and PEFT adapters (``adapters.py``);
each owns its options' checks.

``apply_strategy`` wraps the model if the strategy adds an adapter and sets ``requires_grad``; it must run before any
distributed wrapper and before the optimizer is built.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from ftlab.core.checks import Checker, is_number
from ftlab.model.anatomy import ArchitectureError, find_parts
from ftlab.strategies.adapters import Adapter
from ftlab.strategies.base import Selection, Strategy, StrategyError
from ftlab.strategies.freezing import BitFit, Full, GradualUnfreezing, HeadOnly, Partial, Pattern
from ftlab.strategies.ia3 import IA3
from ftlab.strategies.lora import LoRA

if TYPE_CHECKING:
    from torch import nn  # a model is passed in: its caller loaded torch

STRATEGIES: dict[str, Strategy] = {s.name: s for s in (Full(), Partial(), HeadOnly(), BitFit(), Pattern(),
                                                       GradualUnfreezing(), LoRA(), IA3())}
# Options every strategy has: frozen_dropout (dropout inside frozen modules; FineTuneModule.train applies it);
# lr_grid (the learning rates a fair comparison tries for this method: the sweep report names them).
COMMON_OPTIONS = ("frozen_dropout", "lr_grid")
ADAPTERS = tuple(name for name, spec in STRATEGIES.items() if isinstance(spec, Adapter))  # strategies that add weights


def get_strategy(strategy: dict[str, Any]) -> Strategy:
    """The ``Strategy`` named by ``strategy["name"]``; a ``StrategyError`` listing the valid names otherwise."""
    name = strategy.get("name")
    if name not in STRATEGIES:
        raise StrategyError(f"strategy.name={name!r} is unknown; valid choices: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def apply_strategy(model: nn.Module, strategy: dict[str, Any]) -> tuple[nn.Module, Selection]:
    """The model to train (``model``, or its adapter wrapper) with every parameter that ``strategy`` does not train
    frozen, and the selection; raises ``StrategyError`` if the selection is empty."""
    spec = get_strategy(strategy)
    model = spec.prepare(model, strategy)
    selection = spec.select(model, strategy)
    if not selection.trainable:
        raise StrategyError(f"strategy {spec.name!r} with {strategy} selects no parameter to train")
    for name, param in model.named_parameters():
        param.requires_grad_(name in selection.trainable)
    return model, selection


def strategy_label(strategy: dict[str, Any]) -> str:
    """How reports name a strategy configuration: ``partial``, ``lora(r=8)``, ``ia3``."""
    return STRATEGIES[strategy["name"]].label(strategy) if strategy.get("name") in STRATEGIES else str(
        strategy.get("name"))


def _check_lr_grid(c: Checker) -> None:
    """``strategy.lr_grid``: null, or positive learning rates in increasing order (one: a rate known to suit the
    method, which a race then takes as chosen)."""
    grid = c.get("strategy.lr_grid")
    if grid is None:
        return
    values = list(grid) if isinstance(grid, (list, tuple)) or OmegaConf.is_list(grid) else None
    if not values or not all(is_number(v) and v > 0 for v in values) or any(
            b <= a for a, b in zip(values, values[1:])):
        c.fail("strategy.lr_grid", "must be null or a list of positive learning rates in increasing order, e.g. "
                                   "[1.0e-4, 2.0e-4, 4.0e-4]")


def check_strategy(c: Checker, model: nn.Module | None) -> None:
    """Record problems with ``strategy.*`` on ``model`` (meta device; None when the model could not be built)."""

    if not c.choice("strategy.name", tuple(STRATEGIES)):
        return
    strategy = STRATEGIES[c.get("strategy.name")]
    before = len(c.problems)
    c.unknown_keys("strategy", ("name", *COMMON_OPTIONS, *strategy.options), f"strategy {strategy.name}")
    for flag in ("strategy.train_embeddings", "strategy.train_head", "strategy.frozen_dropout"):
        c.flag(flag)
    _check_lr_grid(c)
    blocks = None
    if model is not None:
        try:
            blocks = len(find_parts(model).blocks)
        except ArchitectureError as err:
            if strategy.needs_blocks:
                c.fail("strategy.name", str(err))
                return
    strategy.check(c, model, blocks)
    if len(c.problems) > before or model is None:
        return  # selecting needs a sane strategy config
    try:  # on a copy: adapters wrap the model, and the meta model is checked further after this
        apply_strategy(copy.deepcopy(model), OmegaConf.to_container(c.cfg.strategy, resolve=True))
    except StrategyError as err:
        c.fail("strategy", str(err))
    except (ValueError, TypeError, NotImplementedError) as err:  # PEFT's refusals (unsupported layer types, ...)
        c.fail("strategy", f"{type(err).__name__}: {str(err).splitlines()[0]}")


__all__ = ["ADAPTERS", "STRATEGIES", "Selection", "Strategy", "StrategyError", "apply_strategy", "check_strategy",
           "get_strategy", "strategy_label"]
