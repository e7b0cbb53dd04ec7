"""What PEFT adapter strategies share (LoRA and DoRA in ``lora.py``, IA3 in ``ia3.py``): where adapters go, which
head trains with them, and the checks of those options.

Adapters are placed by the same architecture discovery as the freezing strategies: the block stack that
``find_parts`` finds, and the linear layers inside each block, so the defaults work on any encoder or decoder
without per-model lists. ``layers=k`` adapts only the top k blocks (LoRA combined with partial fine-tuning). The task
head trains fully through PEFT's ``modules_to_save``; the base weights stay frozen and bit-identical.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ftlab.core.checks import Checker, is_int
from ftlab.model.anatomy import ArchitectureError, block_stack, find_parts
from ftlab.strategies.base import Selection, Strategy

if TYPE_CHECKING:
    from torch import nn  # a model is passed in: its caller loaded torch

# transformers class name suffix -> PEFT task type (it decides which head PEFT also trains, and how it is saved).
PEFT_TASK_TYPES = {"ForSequenceClassification": "SEQ_CLS", "ForTokenClassification": "TOKEN_CLS",
                   "ForCausalLM": "CAUSAL_LM"}


def _is_linear(module: nn.Module) -> bool:
    # Loaded by whoever built the module; at the top they would cost the settings checks seconds.
    from torch import nn
    from transformers.pytorch_utils import Conv1D  # GPT-2's transposed linear layer

    return isinstance(module, (nn.Linear, Conv1D))


def block_linears(model: nn.Module) -> tuple[str, list[list[str]]]:
    """The block stack's name and, per block, the names of its linear layers relative to the block
    (``attention.self.query``)."""
    path, stack = block_stack(model)
    return path, [[name for name, m in block.named_modules() if name and _is_linear(m)] for block in stack]


def chosen_blocks(n_blocks: int, layers: int | None) -> list[int]:
    """Indices of the adapted blocks: all (``layers`` null), the top k (k > 0) or the bottom |k| (k < 0)."""
    if not layers:
        return list(range(n_blocks))
    return list(range(n_blocks - layers, n_blocks)) if layers > 0 else list(range(-layers))


def matching(relative: list[str], target: str) -> list[str]:
    """Relative layer names equal to ``target`` or ending with ``.target`` (PEFT's own matching rule)."""
    return [name for name in relative if name == target or name.endswith("." + target)]


def module_regex(model: nn.Module, targets: list[str], layers: int | None) -> str:
    """A regular expression that PEFT matches in full against module names: ``targets`` in the chosen blocks only."""
    path, linears = block_linears(model)
    relative = sorted({name for t in targets for block in linears for name in matching(block, t)})
    blocks = chosen_blocks(len(linears), layers)
    return (re.escape(path) + r"\.(" + "|".join(map(str, blocks)) + r")\.(" + "|".join(map(re.escape, relative))
            + ")")


def transposed(model: nn.Module, regex: str) -> bool:
    """Whether the layers ``regex`` names are GPT-2-style ``Conv1D`` (PEFT's ``fan_in_fan_out``)."""
    from transformers.pytorch_utils import Conv1D

    return any(isinstance(m, Conv1D) for name, m in model.named_modules() if re.fullmatch(regex, name))


def head_modules(model: nn.Module) -> list[str]:
    """The largest modules made only of task-head parameters (``bert.pooler``, ``classifier``), which PEFT trains
    in full. Whole modules, so a nested head (RoBERTa's ``classifier.dense`` + ``out_proj``) is one copy, the one
    PEFT itself adds for classification task types."""
    head, chosen = set(find_parts(model).head), []
    for name, module in model.named_modules():  # parents before children
        params = [f"{name}.{p}" for p, _ in module.named_parameters()]
        if name and params and set(params) <= head and not any(name.startswith(c + ".") for c in chosen):
            chosen.append(name)
    return chosen


def peft_task_type(model: nn.Module) -> str | None:
    name = type(model).__name__
    return next((t for suffix, t in PEFT_TASK_TYPES.items() if name.endswith(suffix)), None)


def is_adapter_model(model: nn.Module) -> bool:
    """Whether ``model`` is a PEFT model (its export is merged weights plus the adapter alone)."""
    from peft import PeftModel

    return isinstance(getattr(model, "module", model), PeftModel)


class Adapter(Strategy):
    """An adapter strategy: ``peft_config`` describes the adapter; PEFT wraps the model and freezes the rest."""

    common = ("target_modules", "layers", "train_head")

    def peft_config(self, model: nn.Module, cfg: dict[str, Any]):
        raise NotImplementedError

    def default_targets(self, model: nn.Module) -> list[str]:
        raise NotImplementedError

    def targets(self, model: nn.Module, cfg: dict[str, Any]) -> list[str]:
        return list(cfg.get("target_modules") or self.default_targets(model))

    def head(self, model: nn.Module, cfg: dict[str, Any]) -> list[str] | None:
        return head_modules(model) if cfg.get("train_head", True) else None

    def prepare(self, model: nn.Module, cfg: dict[str, Any]) -> nn.Module:
        from peft import get_peft_model

        return get_peft_model(model, self.peft_config(model, cfg))

    def select(self, model: nn.Module, cfg: dict[str, Any]) -> Selection:
        from peft.tuners.tuners_utils import BaseTunerLayer
        from peft.utils.other import ModulesToSaveWrapper

        added, copies = set(), set()
        for name, module in model.named_modules():
            if isinstance(module, BaseTunerLayer):
                for attr in module.adapter_layer_names:
                    added |= {f"{name}.{attr}.{p}" for p, _ in getattr(module, attr).named_parameters()}
            if isinstance(module, ModulesToSaveWrapper):
                copies |= {f"{name}.original_module.{p}" for p, _ in module.original_module.named_parameters()}
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        return Selection(trainable, added=added, copies=copies)

    def check(self, c: Checker, model: nn.Module | None, blocks: int | None) -> None:
        layers = c.get("strategy.layers")
        if layers is not None and (not is_int(layers) or layers == 0
                                   or (blocks is not None and abs(layers) > blocks)):
            valid = f"-{blocks}..-1 or 1..{blocks}" if blocks is not None else "a non-zero integer"
            c.fail("strategy.layers", f"adapt the top k blocks (negative: bottom |k|), or null for all; valid: {valid}")
        if model is None:
            return
        if c.get("strategy.train_head") is False and peft_task_type(model) != "CAUSAL_LM":
            c.fail("strategy.train_head", "the task head is newly initialised and must train; valid: true")
        try:
            _, linears = block_linears(model)
        except ArchitectureError as err:
            c.fail("strategy.name", str(err))
            return
        available = sorted({name for block in linears for name in block})
        if not available:
            c.fail("strategy.name", f"{type(model).__name__} has no linear layers inside its blocks for an adapter; "
                                    "use a freezing strategy")
            return
        self.check_targets(c, model, available)

    def check_targets(self, c: Checker, model: nn.Module, available: list[str]) -> None:
        targets = c.get("strategy.target_modules")
        if targets is None:
            return
        if isinstance(targets, str) or not all(isinstance(t, str) for t in targets) or not targets:
            c.fail("strategy.target_modules", f"a non-empty list of layer names; valid: {', '.join(available)}")
            return
        for target in targets:
            if not matching(available, target):
                c.fail("strategy.target_modules", f"{target!r} names no linear layer in the blocks; valid: "
                                                  f"{', '.join(available)} (or a suffix such as "
                                                  f"{available[0].rsplit('.', 1)[-1]})")
