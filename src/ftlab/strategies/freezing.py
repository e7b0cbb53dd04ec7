"""Freezing strategies: which parameters train, decided from parameter names before training starts.

Every strategy maps (model, strategy config) to a ``Selection``: the trainable parameter names and, for gradual
unfreezing, the stage at which each of them starts to learn. Each also checks its own options.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from ftlab.core.checks import Checker, is_int
from ftlab.model.anatomy import find_parts
from ftlab.strategies.base import Selection, Strategy, StrategyError

if TYPE_CHECKING:
    from torch import nn  # a model is passed in: its caller loaded torch


class Full(Strategy):
    """Every parameter trains."""

    name = "full"
    needs_blocks = False

    def select(self, model: nn.Module, cfg: dict[str, Any]) -> Selection:
        return Selection({name for name, _ in model.named_parameters()})


class Partial(Strategy):
    """The top k blocks (k > 0, the classic recipe) or the bottom |k| (k < 0, LLaMA-Factory), plus the head."""

    name = "partial"
    options = ("trainable_layers", "train_embeddings", "train_head")

    def select(self, model: nn.Module, cfg: dict[str, Any]) -> Selection:
        parts = find_parts(model)
        k = int(cfg.get("trainable_layers", 1))
        blocks = parts.blocks[len(parts.blocks) - k:] if k > 0 else parts.blocks[:-k]
        chosen = {name for block in blocks for name in block}
        if cfg.get("train_head", True):
            chosen |= set(parts.head)
        if cfg.get("train_embeddings", False):
            chosen |= set(parts.embeddings)
        return Selection(chosen)

    def label(self, cfg: dict[str, Any]) -> str:
        return f"partial(k={cfg.get('trainable_layers', 1)})"

    def check(self, c: Checker, model: nn.Module | None, blocks: int | None) -> None:
        k = c.get("strategy.trainable_layers")
        if not is_int(k):
            c.fail("strategy.trainable_layers", "must be an integer (negative: bottom |k| blocks)")
        elif blocks is not None and abs(k) > blocks:
            c.fail("strategy.trainable_layers",
                   f"the model has only {blocks} layers; valid: -{blocks}..{blocks} (negative: bottom |k|)")


class HeadOnly(Strategy):
    """Linear probe: only the task head trains."""

    name = "head_only"

    def select(self, model: nn.Module, cfg: dict[str, Any]) -> Selection:
        return Selection(set(find_parts(model).head))


class BitFit(Strategy):
    """BitFit (Ben Zaken et al. 2022): every bias term, plus the task head."""

    name = "bitfit"
    options = ("train_head",)

    def select(self, model: nn.Module, cfg: dict[str, Any]) -> Selection:
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


class Pattern(Strategy):
    """Names matching any ``train`` regex (all names when the list is empty), minus those matching ``freeze``."""

    name = "pattern"
    options = ("train", "freeze")
    needs_blocks = False

    def select(self, model: nn.Module, cfg: dict[str, Any]) -> Selection:
        names = [name for name, _ in model.named_parameters()]
        train, freeze = list(cfg.get("train") or []), list(cfg.get("freeze") or [])
        problems = unmatched_patterns(names, train + freeze)
        if problems:
            raise StrategyError("strategy pattern: " + "; ".join(problems))
        chosen = {n for n in names if not train or any(re.search(p, n) for p in train)}
        return Selection({n for n in chosen if not any(re.search(p, n) for p in freeze)})

    def check(self, c: Checker, model: nn.Module | None, blocks: int | None) -> None:
        names = [n for n, _ in model.named_parameters()] if model is not None else None
        for key in ("strategy.train", "strategy.freeze"):
            value = c.get(key)
            if value is not None and not OmegaConf.is_list(value):
                c.fail(key, "must be a list of regular expressions")
            elif names is not None:
                for problem in unmatched_patterns(names, [str(v) for v in value or []]):
                    c.problems.append(f"{key}: {problem}")


class GradualUnfreezing(Strategy):
    """ULMFiT (Howard & Ruder 2018): the head first, then one more block from the top every ``every`` units.

    Every parameter that will ever train is trainable from the start; not-yet-unfrozen ones sit in zero-LR optimizer
    groups, so DDP's gradient buckets never change (Lightning issue 20340).
    """

    name = "gradual_unfreezing"
    options = ("every", "unit", "train_embeddings")
    UNITS = ("epoch", "step")

    def select(self, model: nn.Module, cfg: dict[str, Any]) -> Selection:
        parts = find_parts(model)
        stages = {name: 0 for name in parts.head}
        for depth, block in enumerate(reversed(parts.blocks), start=1):
            stages.update({name: depth for name in block})
        if cfg.get("train_embeddings", True):
            stages.update({name: len(parts.blocks) + 1 for name in parts.embeddings})
        unit = cfg.get("unit", "epoch")
        if unit not in self.UNITS:
            raise StrategyError(f"strategy.unit={unit!r}; valid choices: {', '.join(self.UNITS)}")
        return Selection(set(stages), stages, every=int(cfg.get("every", 1)), unit=unit)

    def check(self, c: Checker, model: nn.Module | None, blocks: int | None) -> None:
        c.positive("strategy.every", int)
        c.choice("strategy.unit", self.UNITS)
