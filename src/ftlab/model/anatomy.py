"""The anatomy of a transformer, for any architecture: embeddings, the stack of blocks, the head, and where
backward stops; what strategies, the plan and the frozen-prefix cache act on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


class ArchitectureError(ValueError):
    """Raised when embeddings / blocks / head of a model cannot be identified."""


@dataclass
class ModelParts:
    """Parameter names grouped by role, in forward order: embeddings, each block (bottom to top), head."""

    embeddings: list[str] = field(default_factory=list)
    blocks: list[list[str]] = field(default_factory=list)
    head: list[str] = field(default_factory=list)

    def groups(self) -> dict[str, list[str]]:
        """Ordered ``{"embeddings": [...], "block.0": [...], ..., "head": [...]}``."""
        out = {"embeddings": self.embeddings}
        out.update({f"block.{i}": names for i, names in enumerate(self.blocks)})
        out["head"] = self.head
        return out


def param_name(name: str) -> str:
    """A parameter or module name as in the unwrapped model (FSDP inserts ``_fsdp_wrapped_module.`` levels)."""
    return name.replace("_fsdp_wrapped_module.", "").removesuffix("._fsdp_wrapped_module").removeprefix(
        "_fsdp_wrapped_module")


def base_model(model: nn.Module) -> tuple[nn.Module, str]:
    """The base model (``BertModel`` inside ``BertForSequenceClassification``) and its name in ``model``."""
    base = getattr(model, "base_model", model)
    return base, next((param_name(name) for name, mod in model.named_modules() if mod is base), "")


def block_stack(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The stack of transformer blocks and its name: the ``nn.ModuleList`` holding the most parameters inside the
    base model."""
    # Whoever built the model loaded torch; imported here rather than at the top, so that the config's validation,
    # which imports this module through the strategies, checks the settings without it (seconds to import).
    from torch import nn

    base, prefix = base_model(model)
    stacks = [
        (param_name(name), mod)
        for name, mod in base.named_modules()
        if isinstance(mod, nn.ModuleList) and len(mod) > 0
    ]
    if not stacks:
        raise ArchitectureError(
            f"cannot find a stack of transformer blocks (an nn.ModuleList) in {type(model).__name__}; "
            "use a strategy that names parameters explicitly"
        )
    stack_name, stack = max(stacks, key=lambda item: sum(p.numel() for p in item[1].parameters()))
    return (f"{prefix}.{stack_name}" if prefix else stack_name), stack


def find_parts(model: nn.Module) -> ModelParts:
    """Split a model's parameters into embeddings, transformer blocks and head, for any architecture.

    Base-model parameters registered before the block stack (see ``block_stack``) are embeddings; everything after
    it (pooler, final norm) and everything outside the base model (classifier, score) is the head. Names are those
    of the unwrapped model, also when FSDP has wrapped it.
    """
    stack_path, stack = block_stack(model)
    prefix = base_model(model)[1]
    base_path = f"{prefix}." if prefix else ""

    parts = ModelParts(blocks=[[] for _ in range(len(stack))])
    seen_stack = False
    for name in (param_name(n) for n, _ in model.named_parameters()):
        if name.startswith(stack_path + "."):
            index = int(name[len(stack_path) + 1:].split(".", 1)[0])
            parts.blocks[index].append(name)
            seen_stack = True
        elif name.startswith(base_path) and not seen_stack:
            parts.embeddings.append(name)
        else:
            parts.head.append(name)
    return parts


def count_parameters(model: nn.Module, skip: set[str] = frozenset()) -> dict[str, float]:
    """Total and trainable parameter counts and the trainable fraction; ``skip``: names of frozen copies that are not
    part of the trained model (``Selection.copies``)."""
    params = [p for name, p in model.named_parameters() if name not in skip]
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return {
        "params/total": total,
        "params/trainable": trainable,
        "params/trainable_fraction": trainable / total if total else 0.0,
    }


def lowest_backward_block(blocks: list[list[str]], embeddings: list[str], trainable: set[str]) -> int:
    """Where backward stops: the lowest block holding a trainable parameter (0 when the embeddings train;
    ``len(blocks)`` when no block does)."""
    if any(n in trainable for n in embeddings):
        return 0
    return next((i for i, b in enumerate(blocks) if any(n in trainable for n in b)), len(blocks))
