"""Freezing strategies: decide which parameters train, as pure functions over parameter names.

Each strategy maps (model parts, strategy config) to the set of trainable parameter names.
``apply_strategy`` sets ``requires_grad`` accordingly; it must run before any distributed wrapper
and before the optimizer is built.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from ftlab.models import ModelParts, find_parts

Selector = Callable[[ModelParts, dict[str, Any]], set[str]]


def _full(parts: ModelParts, cfg: dict[str, Any]) -> set[str]:
    return {name for names in parts.groups().values() for name in names}


def _partial(parts: ModelParts, cfg: dict[str, Any]) -> set[str]:
    k = int(cfg.get("trainable_layers", 1))
    chosen = set(parts.head) if cfg.get("train_head", True) else set()
    if cfg.get("train_embeddings", False):
        chosen |= set(parts.embeddings)
    if k:
        for block in parts.blocks[-k:]:
            chosen |= set(block)
    return chosen


def _head_only(parts: ModelParts, cfg: dict[str, Any]) -> set[str]:
    return set(parts.head)


STRATEGIES: dict[str, Selector] = {
    "full": _full,
    "partial": _partial,
    "head_only": _head_only,
}


class StrategyError(ValueError):
    """Raised when a strategy selects nothing or is unknown."""


def select_trainable(model: nn.Module, strategy: dict[str, Any]) -> set[str]:
    """Names of the parameters that ``strategy`` trains on ``model``."""
    name = strategy.get("name")
    if name not in STRATEGIES:
        raise StrategyError(f"strategy.name={name!r} is unknown; valid choices: {', '.join(STRATEGIES)}")
    chosen = STRATEGIES[name](find_parts(model), strategy)
    if not chosen:
        raise StrategyError(f"strategy {name!r} with {strategy} selects no parameter to train")
    return chosen


def apply_strategy(model: nn.Module, strategy: dict[str, Any]) -> set[str]:
    """Freeze every parameter of ``model`` that ``strategy`` does not train; return the trainable names."""
    chosen = select_trainable(model, strategy)
    for name, param in model.named_parameters():
        param.requires_grad_(name in chosen)
    return chosen
