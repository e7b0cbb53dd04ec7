"""Strategies: which parameters train. Freezing strategies today (``freezing.py``); each owns its options' checks.

``apply_strategy`` sets ``requires_grad``; it must run before any distributed wrapper and before the optimizer is
built.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf
from torch import nn

from ftlab.checks import Checker
from ftlab.strategies.base import Selection, Strategy, StrategyError
from ftlab.strategies.freezing import BitFit, Full, GradualUnfreezing, HeadOnly, Partial, Pattern

STRATEGIES: dict[str, Strategy] = {s.name: s for s in (Full(), Partial(), HeadOnly(), BitFit(), Pattern(),
                                                       GradualUnfreezing())}


def select(model: nn.Module, strategy: dict[str, Any]) -> Selection:
    """The ``Selection`` that ``strategy`` makes on ``model``; raises ``StrategyError`` if it is empty."""
    name = strategy.get("name")
    if name not in STRATEGIES:
        raise StrategyError(f"strategy.name={name!r} is unknown; valid choices: {', '.join(STRATEGIES)}")
    selection = STRATEGIES[name].select(model, strategy)
    if not selection.trainable:
        raise StrategyError(f"strategy {name!r} with {strategy} selects no parameter to train")
    return selection


def apply_strategy(model: nn.Module, strategy: dict[str, Any]) -> Selection:
    """Freeze every parameter of ``model`` that ``strategy`` does not train; return the selection."""
    selection = select(model, strategy)
    for name, param in model.named_parameters():
        param.requires_grad_(name in selection.trainable)
    return selection


def check_strategy(c: Checker, model: nn.Module | None) -> None:
    """Record problems with ``strategy.*`` on ``model`` (meta device; None when the model could not be built)."""
    from ftlab.models import ArchitectureError, find_parts

    if not c.choice("strategy.name", tuple(STRATEGIES)):
        return
    strategy = STRATEGIES[c.get("strategy.name")]
    before = len(c.problems)
    c.unknown_keys("strategy", ("name", *strategy.options), f"strategy {strategy.name}")
    for flag in ("strategy.train_embeddings", "strategy.train_head"):
        c.flag(flag)
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
    try:
        select(model, OmegaConf.to_container(c.cfg.strategy, resolve=True))
    except StrategyError as err:
        c.fail("strategy", str(err))


__all__ = ["STRATEGIES", "Selection", "Strategy", "StrategyError", "apply_strategy", "check_strategy", "select"]
