"""The cost of a strategy before training: parameters by group, and memory for grads, optimizer, activations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftlab.core.trainer_settings import TrainerSettings, trainer_settings
from ftlab.model.anatomy import ArchitectureError, find_parts, lowest_backward_block
from ftlab.model.architecture import meta_model
from ftlab.strategies import Selection, apply_strategy

# Optimizer state tensors kept per trainable parameter.
OPTIMIZER_STATES = {"AdamW": 2, "Adam": 2, "SGD": 1, "Adafactor": 1}


def activation_bytes(hidden: int, heads: int, batch: int, seq: int, blocks: int, value_bytes: int,
                     checkpointing: bool = False) -> int:
    """Activations stored for backward by ``blocks`` transformer blocks.

    Korthikanti et al. (2022): a block keeps about ``s*b*h*(34 + 5*a*s/h)`` bytes at 16-bit; scaled by the element
    size here. With gradient checkpointing each block keeps only its input, plus one block's full set.
    """
    if blocks <= 0:
        return 0
    scale = value_bytes / 2
    full = seq * batch * hidden * (34 + 5 * heads * seq / hidden) * scale
    if checkpointing:
        return int(blocks * seq * batch * hidden * 2 * scale + full)
    return int(blocks * full)




def training_flops(model: nn.Module, batch_size: int, seq_len: int, selection: Selection | None = None) -> int:
    """Matrix-multiply FLOPs of one training step (forward + backward) of an encoder classifier.

    Forward: 2 FLOPs per 2-D block weight per token, 4 * seq_len * hidden per token per block for attention scores
    and the weighted sum; the head's 2-D weights act once per sequence. Backward: input gradients (as much again as
    the forward) through every block from the top down to the lowest one holding a trainable weight, and weight
    gradients (2 per weight per token) for trainable weights only. Without ``selection`` everything trains (full
    fine-tuning: 6 per weight per token, exactly what PyTorch's FLOP counter counts). Embedding lookups, norms and
    activations are not counted (the usual convention for MFU).
    """
    parts = find_parts(model)
    params = dict(model.named_parameters())
    trainable = selection.trainable if selection is not None else set(params)

    def weights(names, only_trainable=False):
        return sum(params[n].numel() for n in names if params[n].dim() == 2 and (n in trainable or not only_trainable))

    attention = 4 * seq_len**2 * model.config.hidden_size
    lowest = lowest_backward_block(parts.blocks, parts.embeddings, trainable)
    forward = sum(2 * seq_len * weights(b) + attention for b in parts.blocks) + 2 * weights(parts.head)
    backward_input = sum(2 * seq_len * weights(b) + 2 * attention for b in parts.blocks[lowest:])
    backward_weight = 2 * seq_len * sum(weights(b, True) for b in parts.blocks) + 2 * weights(parts.head, True)
    head_input = 2 * weights(parts.head) if lowest < len(parts.blocks) else 0
    output = getattr(model, "get_output_embeddings", lambda: None)()
    if output is not None:  # a causal LM's head acts on every token (its weight may be tied to the input embedding)
        lm_weights, lm_trains = output.weight.numel(), any(p is output.weight and n in trainable
                                                           for n, p in params.items())
        forward += 2 * seq_len * lm_weights
        backward_weight += 2 * seq_len * lm_weights if lm_trains else 0
        head_input += 2 * seq_len * lm_weights if lowest < len(parts.blocks) else 0
    return batch_size * (forward + backward_input + backward_weight + head_input)

DEFAULT_SETTINGS = TrainerSettings()  # one process, 32-true


def build_plan(model: nn.Module, selection: Selection, *, batch_size: int, max_length: int,
               settings: TrainerSettings = DEFAULT_SETTINGS, optimizer: str = "AdamW",
               checkpointing: bool = False) -> dict[str, Any]:
    """Parameter counts by group and the memory the selection implies (bytes), as a JSON-ready dict."""
    # PEFT's frozen originals of the modules it trains in full are not part of the trained model: counted nowhere.
    params = {n: p for n, p in model.named_parameters() if n not in selection.copies}
    try:
        parts = find_parts(model)
        groups = {g: [n for n in names if n in params] for g, names in parts.groups().items()}
        blocks = [[n for n in b if n in params] for b in parts.blocks]
    except ArchitectureError:
        groups, blocks = {"all": list(params)}, []
    trainable = selection.trainable
    by_group = {
        name: {"total": sum(params[n].numel() for n in names),
               "trainable": sum(params[n].numel() for n in names if n in trainable)}
        for name, names in groups.items()
    }
    total = sum(p.numel() for p in params.values())
    n_trainable = sum(params[n].numel() for n in trainable)
    element = next(iter(params.values())).element_size()
    # Backward runs from the top down to the lowest block holding a trainable parameter (or the embeddings).
    lowest = lowest_backward_block(blocks, groups.get("embeddings", []), trainable)
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", 0) or 0
    heads = getattr(config, "num_attention_heads", 1) or 1
    adapter = sum(params[n].numel() for n in selection.added)
    try:
        flops_per_sample = training_flops(model, 1, max_length, selection)
    except (ArchitectureError, AttributeError):
        flops_per_sample = None
    return {
        "strategy_stages": selection.num_stages,
        "params": {"total": total, "trainable": n_trainable, "trainable_fraction": n_trainable / total,
                   "adapter": adapter, "by_group": by_group, "element_bytes": element},
        # The largest piece FSDP gathers at once: a block, or everything outside the blocks (one root unit).
        "largest_unit_params": max([sum(params[n].numel() for n in b) for b in blocks]
                                   + [total - sum(params[n].numel() for b in blocks for n in b)]),
        "memory_bytes": {
            "weights": total * element,
            "gradients": n_trainable * element,
            "optimizer_state": n_trainable * element * OPTIMIZER_STATES.get(optimizer, 2),
            "activations_estimate": activation_bytes(hidden, heads, batch_size, max_length, len(blocks) - lowest,
                                                     settings.activation_bytes, checkpointing),
        },
        # One sample at max_length (the budget curves' FLOPs axis); None when the blocks cannot be found.
        "flops_per_sample": flops_per_sample,
        "backward_blocks": len(blocks) - lowest,
        # An adapter trains few weights, but back-propagation still runs through every adapted block, storing its
        # activations as full fine-tuning does: its savings are gradients and optimizer state, not activations.
        "backward_note": (f"adapter weights in {len(blocks) - lowest} block(s): back-propagation runs through them all"
                          if adapter else ""),
        "assumptions": {"batch_size": batch_size, "max_length": max_length, "precision": settings.precision,
                        "optimizer": optimizer, "gradient_checkpointing": checkpointing},
    }


def planned_model(model_cfg: dict[str, Any], task: str, strategy: dict[str, Any],
                  settings: TrainerSettings) -> tuple[nn.Module, Selection]:
    """The model and selection to plan, from the checkpoint's ``config.json`` alone: the architecture on the meta
    device in the weights' precision (no memory, no weights needed), with ``strategy`` applied."""

    model = meta_model(model_cfg, task=task).to(getattr(torch, settings.weight_dtype))
    with torch.device("meta"):  # an adapter's new weights: shapes only, like the rest
        return apply_strategy(model, strategy)


def job_plan(cfg, model: nn.Module, selection: Selection) -> dict[str, Any]:
    """``build_plan`` with a job's settings: batch size, sequence length, precision, optimizer, checkpointing."""
    return build_plan(model, selection, batch_size=cfg.batch_size, max_length=cfg.max_length,
                      settings=trainer_settings(cfg.trainer),
                      optimizer=cfg.optimizer._target_.rsplit(".", 1)[-1],
                      checkpointing=bool(cfg.model.get("gradient_checkpointing")))


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def format_plan(plan: dict[str, Any]) -> str:
    """A console table: one row per parameter group, then the memory lines."""
    lines = [f"{'group':<14}{'params':>16}{'trainable':>16}"]
    for name, row in plan["params"]["by_group"].items():
        lines.append(f"{name:<14}{row['total']:>16,}{row['trainable']:>16,}")
    p = plan["params"]
    lines.append(f"{'total':<14}{p['total']:>16,}{p['trainable']:>16,}  ({100 * p['trainable_fraction']:.2f}%)")
    if p.get("adapter"):
        lines.append(f"{'adapter':<14}{p['adapter']:>16,}{p['adapter']:>16,}  (added by the strategy)")
    for key, value in plan["memory_bytes"].items():
        lines.append(f"{key:<22}{_mib(value):>14}")
    if disk := plan.get("disk_bytes"):
        lines.append(f"{'disk':<22}{_mib(disk['while_training']):>14}  while training; {_mib(disk['after_success'])} "
                     f"kept after success (keep_checkpoints={disk['keep_checkpoints']})")
    lines.append(f"backward through {plan['backward_blocks']} block(s); {plan['assumptions']}")
    if cache := plan.get("frozen_prefix_cache"):
        lines.append(f"frozen-prefix cache: {cache['frozen_blocks']} block(s), {cache['tokens']:,} tokens, "
                     f"{_mib(cache['bytes'])} ({cache['held_in']})")
    return "\n".join(lines)


def write_plan(plan: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(plan, indent=2) + "\n")
