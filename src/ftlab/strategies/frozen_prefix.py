"""The frozen prefix of a model under a strategy: what comes before the first trained parameter (the embeddings and
the bottom blocks), which modules run without dropout when ``strategy.frozen_dropout=false``, and where the
frozen-prefix cache cuts the network."""

from __future__ import annotations

from torch import nn

from ftlab.model.anatomy import base_model, block_stack, find_parts, lowest_backward_block


def frozen_boundary(model: nn.Module) -> int:
    """How many bottom blocks are frozen, with the embeddings: 0 when the embeddings train, the block count when
    no block does (only the head trains)."""
    parts = find_parts(model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return lowest_backward_block(parts.blocks, parts.embeddings, trainable)


def before_blocks(model: nn.Module) -> list[nn.Module]:
    """The base model's modules that run before the block stack: the embeddings, and modules without parameters
    between them and the blocks (GPT-2's embedding dropout ``transformer.drop``)."""
    base, _ = base_model(model)
    _, stack = block_stack(model)
    found = []
    for child in base.children():
        if child is stack or any(m is stack for m in child.modules()):
            return found
        found.append(child)
    return found


def frozen_modules(model: nn.Module) -> list[nn.Module]:
    """The modules that train no parameter: the largest submodules that hold parameters and train none of them
    (embeddings and blocks a freezing strategy left out; a PEFT model's base modules without an adapter), and, when
    the embeddings are frozen, every module between them and the blocks. A module without parameters elsewhere
    (the classifier's dropout) belongs to none of them."""
    found = []

    def visit(module: nn.Module) -> None:
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            found.append(module)
            return
        for child in module.children():
            visit(child)

    visit(model)
    try:
        embeddings = before_blocks(model)
    except ValueError:  # no block stack (ArchitectureError): only the parameter rule applies
        return found
    if not any(p.requires_grad for m in embeddings for p in m.parameters()):
        found += [m for m in embeddings if not any(m is f for f in found)]
    return found
