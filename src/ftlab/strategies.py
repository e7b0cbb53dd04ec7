"""Freezing strategies: which parameters train, decided from parameter names before training starts.

Every strategy maps (model, strategy config) to a ``Selection``: the trainable parameter names and, for
gradual unfreezing, the stage at which each of them starts to learn. ``apply_strategy`` sets
``requires_grad``; it must run before any distributed wrapper and before the optimizer is built.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from ftlab.models import find_parts


class StrategyError(ValueError):
    """Raised when a strategy is unknown, misconfigured, or selects nothing."""


@dataclass
class Selection:
    """Trainable names; ``stages`` maps each to the unfreezing stage where it starts learning (0 = at once)."""

    trainable: set[str]
    stages: dict[str, int] = field(default_factory=dict)
    every: int = 1
    unit: str = "epoch"

    @property
    def num_stages(self) -> int:
        return max(self.stages.values(), default=0) + 1


def _full(model: nn.Module, cfg: dict[str, Any]) -> Selection:
    return Selection({name for name, _ in model.named_parameters()})


def _partial(model: nn.Module, cfg: dict[str, Any]) -> Selection:
    parts = find_parts(model)
    k = int(cfg.get("trainable_layers", 1))
    # k > 0: the top k blocks (classic recipe); k < 0: the bottom |k| blocks (LLaMA-Factory convention).
    blocks = parts.blocks[len(parts.blocks) - k:] if k > 0 else parts.blocks[:-k]
    chosen = {name for block in blocks for name in block}
    if cfg.get("train_head", True):
        chosen |= set(parts.head)
    if cfg.get("train_embeddings", False):
        chosen |= set(parts.embeddings)
    return Selection(chosen)


def _head_only(model: nn.Module, cfg: dict[str, Any]) -> Selection:
    return Selection(set(find_parts(model).head))


def _bitfit(model: nn.Module, cfg: dict[str, Any]) -> Selection:
    """BitFit (Ben Zaken et al. 2022): every bias term, plus the task head."""
    chosen = {name for name, _ in model.named_parameters() if name.endswith("bias")}
    if cfg.get("train_head", True):
        chosen |= set(find_parts(model).head)
    return Selection(chosen)


def unmatched_patterns(names: list[str], patterns: list[str]) -> list[str]:
    """One message per pattern that matches no name (or does not compile), with the closest names."""
    problems = []
    for pattern in patterns:
        try:
            regex = re.compile(pattern)
        except re.error as err:
            problems.append(f"{pattern!r} is not a valid regular expression ({err})")
            continue
        if not any(regex.search(name) for name in names):
            close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.3)
            problems.append(f"{pattern!r} matches no parameter; closest names: {', '.join(close) or '(none)'}")
    return problems


def _pattern(model: nn.Module, cfg: dict[str, Any]) -> Selection:
    """Names matching any ``train`` regex (all names when the list is empty), minus those matching ``freeze``."""
    names = [name for name, _ in model.named_parameters()]
    train, freeze = list(cfg.get("train") or []), list(cfg.get("freeze") or [])
    problems = unmatched_patterns(names, train + freeze)
    if problems:
        raise StrategyError("strategy pattern: " + "; ".join(problems))
    chosen = {n for n in names if not train or any(re.search(p, n) for p in train)}
    return Selection({n for n in chosen if not any(re.search(p, n) for p in freeze)})


def _gradual_unfreezing(model: nn.Module, cfg: dict[str, Any]) -> Selection:
    """ULMFiT (Howard & Ruder 2018): the head first, then one more block from the top every ``every`` units.

    Every parameter that will ever train is trainable from the start; not-yet-unfrozen ones sit in
    zero-LR optimizer groups, so DDP's gradient buckets never change (Lightning issue 20340).
    """
    parts = find_parts(model)
    stages = {name: 0 for name in parts.head}
    for depth, block in enumerate(reversed(parts.blocks), start=1):
        stages.update({name: depth for name in block})
    if cfg.get("train_embeddings", True):
        stages.update({name: len(parts.blocks) + 1 for name in parts.embeddings})
    unit = cfg.get("unit", "epoch")
    if unit not in ("epoch", "step"):
        raise StrategyError(f"strategy.unit={unit!r}; valid choices: epoch, step")
    return Selection(set(stages), stages, every=int(cfg.get("every", 1)), unit=unit)


STRATEGIES: dict[str, Callable[[nn.Module, dict[str, Any]], Selection]] = {
    "full": _full,
    "partial": _partial,
    "head_only": _head_only,
    "bitfit": _bitfit,
    "pattern": _pattern,
    "gradual_unfreezing": _gradual_unfreezing,
}


def select(model: nn.Module, strategy: dict[str, Any]) -> Selection:
    """The ``Selection`` that ``strategy`` makes on ``model``; raises ``StrategyError`` if it is empty."""
    name = strategy.get("name")
    if name not in STRATEGIES:
        raise StrategyError(f"strategy.name={name!r} is unknown; valid choices: {', '.join(STRATEGIES)}")
    selection = STRATEGIES[name](model, strategy)
    if not selection.trainable:
        raise StrategyError(f"strategy {name!r} with {strategy} selects no parameter to train")
    return selection


def apply_strategy(model: nn.Module, strategy: dict[str, Any]) -> Selection:
    """Freeze every parameter of ``model`` that ``strategy`` does not train; return the selection."""
    selection = select(model, strategy)
    for name, param in model.named_parameters():
        param.requires_grad_(name in selection.trainable)
    return selection
