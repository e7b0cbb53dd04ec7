"""Load checkpoints and tokenizers, and find the parts of a transformer that freezing strategies act on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ftlab.assets import resolve_path


def load_tokenizer(model_cfg: dict[str, Any]):
    """Load the fast tokenizer of a checkpoint, giving it a pad token when it has none (GPT-2, LLaMA)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        resolve_path(model_cfg["pretrained_model_name_or_path"]),
        revision=model_cfg.get("revision"),
        use_fast=True,
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_model(model_cfg: dict[str, Any], label_names: list[str], pad_token_id: int | None = None) -> nn.Module:
    """Load ``AutoModelForSequenceClassification`` with a fresh head for ``label_names``.

    Remote code is never executed: only architectures that ship with ``transformers`` load.
    """
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_path(model_cfg["pretrained_model_name_or_path"]),
        revision=model_cfg.get("revision"),
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        trust_remote_code=False,
        dtype=torch.float32,
    )
    if pad_token_id is not None and model.config.pad_token_id is None:
        # Decoder classifiers pool the last non-pad token and need to know which id is padding.
        model.config.pad_token_id = pad_token_id
    if model_cfg.get("gradient_checkpointing"):
        # Non-reentrant: the reentrant variant returns no gradients when the blocks below are frozen
        # (transformers issue 21381).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def meta_model(model_cfg: dict[str, Any], num_labels: int = 2) -> nn.Module:
    """The model's architecture on the meta device: parameter names and shapes without loading weights."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(
        resolve_path(model_cfg["pretrained_model_name_or_path"]), revision=model_cfg.get("revision"),
        trust_remote_code=False, num_labels=num_labels)
    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(config, trust_remote_code=False)


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


def find_parts(model: nn.Module) -> ModelParts:
    """Split a model's parameters into embeddings, transformer blocks and head, for any architecture.

    The block stack is the ``nn.ModuleList`` holding the most parameters inside the base model.
    Base-model parameters registered before it are embeddings; everything after it (pooler, final norm)
    and everything outside the base model (classifier, score) is the head.
    """
    base = getattr(model, "base_model", model)
    prefix = next((name for name, mod in model.named_modules() if mod is base), "")
    stacks = [
        (name, mod)
        for name, mod in base.named_modules()
        if isinstance(mod, nn.ModuleList) and len(mod) > 0
    ]
    if not stacks:
        raise ArchitectureError(
            f"cannot find a stack of transformer blocks (an nn.ModuleList) in {type(model).__name__}; "
            "use a strategy that names parameters explicitly"
        )
    stack_name, stack = max(stacks, key=lambda item: sum(p.numel() for p in item[1].parameters()))
    stack_path = f"{prefix}.{stack_name}" if prefix else stack_name
    base_path = f"{prefix}." if prefix else ""

    parts = ModelParts(blocks=[[] for _ in range(len(stack))])
    seen_stack = False
    for name, _ in model.named_parameters():
        if name.startswith(stack_path + "."):
            index = int(name[len(stack_path) + 1:].split(".", 1)[0])
            parts.blocks[index].append(name)
            seen_stack = True
        elif name.startswith(base_path) and not seen_stack:
            parts.embeddings.append(name)
        else:
            parts.head.append(name)
    return parts


def count_parameters(model: nn.Module) -> dict[str, float]:
    """Total and trainable parameter counts and the trainable fraction."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "params/total": total,
        "params/trainable": trainable,
        "params/trainable_fraction": trainable / total if total else 0.0,
    }
