"""What every strategy provides: a ``Selection`` of trainable parameters, and the checks of its own options.

Freezing strategies only choose among the model's own parameters; adapter strategies first ``prepare`` the model
(wrap it with PEFT, adding parameters) and then choose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ftlab.core.checks import Checker

if TYPE_CHECKING:
    from torch import nn  # a model is passed in: its caller loaded torch


class StrategyError(ValueError):
    """Raised when a strategy is unknown, misconfigured, or selects nothing."""


@dataclass
class Selection:
    """Trainable names; ``stages`` maps each to the unfreezing stage where it starts learning (0 = at once).

    ``added``: parameters the strategy added to the model (adapter weights). ``copies``: frozen duplicates that are
    not part of the trained model (PEFT keeps the original of each module it trains in full next to the trained
    copy); they are counted nowhere.
    """

    trainable: set[str]
    stages: dict[str, int] = field(default_factory=dict)
    every: int = 1
    unit: str = "epoch"
    added: set[str] = field(default_factory=set)
    copies: set[str] = field(default_factory=set)

    @property
    def num_stages(self) -> int:
        return max(self.stages.values(), default=0) + 1


class Strategy:
    """A way to choose which parameters train. ``select`` decides from names; ``check`` records problems with the
    strategy's options (``strategy.*``) against the model's architecture (built on the meta device, no weights)."""

    name: str
    options: tuple[str, ...] = ()  # its keys under ``strategy.`` besides ``name``; any other key is an error
    needs_blocks = True  # whether the strategy needs the model's block stack (find_parts)

    def load_kwargs(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """Extra ``from_pretrained`` arguments the strategy needs (QLoRA's 4-bit quantization)."""
        return {}

    def prepare(self, model: nn.Module, cfg: dict[str, Any]) -> nn.Module:
        """The model to train: ``model`` itself for freezing strategies, a wrapper around it for adapters."""
        return model

    def select(self, model: nn.Module, cfg: dict[str, Any]) -> Selection:
        raise NotImplementedError

    def label(self, cfg: dict[str, Any]) -> str:
        """How reports and plots name this configuration (adapters add their rank: ``lora(r=8)``)."""
        return self.name

    def check(self, c: Checker, model: nn.Module | None, blocks: int | None) -> None:
        """Problems with this strategy's options; ``blocks`` is the model's block count (None if unknown)."""
