"""Multi-process runs: Hydra-safe rank re-launch, FSDP sharding of the model, per-job process-group cleanup."""

from __future__ import annotations

import contextlib
import os
import sys
from collections import Counter
from pathlib import Path

from omegaconf import open_dict, read_write
from torch import nn

from ftlab.model.anatomy import block_stack


def prepare_rank_relaunch() -> None:
    """Point Lightning's subprocess launcher at this job's saved config.

    Lightning re-runs ``sys.argv`` for ranks > 0 and appends ``hydra.run.dir``; under ``-m`` that would start
    a second sweep in every child (lightning-hydra-template issue 393). Here the children instead compose the
    job's own ``.hydra/config.yaml`` (already fully composed) and run in the job's directory.
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    job_dir = hydra_cfg.runtime.output_dir
    saved = Path(job_dir) / str(hydra_cfg.output_subdir or ".hydra")
    sys.argv = [sys.argv[0], "--config-path", str(saved), "--config-name", "config", f"output_dir={job_dir}"]
    run_node = HydraConfig.instance().cfg.hydra.run
    with read_write(run_node), open_dict(run_node):  # Lightning passes hydra.run.dir to the children
        run_node.dir = job_dir


def is_fsdp(strategy) -> bool:
    """Whether a Lightning strategy shards the model with FSDP (subclasses included)."""
    from lightning.pytorch.strategies import FSDPStrategy

    return isinstance(strategy, FSDPStrategy)


CONTAINERS = (nn.ModuleDict, nn.ModuleList, nn.ParameterDict, nn.ParameterList)


def fsdp_units(model: nn.Module) -> set[int]:
    """Ids of the modules that get their own FSDP unit (one flat parameter each).

    Each transformer block is a unit, so a frozen block never shares a flat parameter with a trainable one. Outside
    the blocks, each largest subtree whose parameters are all frozen (the embeddings under ``partial``) is a unit too:
    a frozen unit has no gradient, so frozen weights next to a trainable head cost no gradient memory. Inside a block
    that mixes both (an adapter beside frozen weights), each largest all-trainable module that is called (PEFT's
    ``lora_A.default``) is a unit, so the block's frozen weights keep no gradient either (IA3's scales are plain
    parameters of the layer they scale and stay in the block's unit). A subtree whose parameter is also used elsewhere
    (input embeddings tied to the LM head) stays in the enclosing unit, as FSDP requires of shared parameters.
    """

    blocks = block_stack(model)[1]
    units = {id(block) for block in blocks}
    owners = Counter(id(p) for m in model.modules() for p in m.parameters(recurse=False))

    def uniform_and_unshared(module: nn.Module, trainable: bool) -> bool:
        params = list(module.parameters())
        inside = Counter(id(p) for m in module.modules() for p in m.parameters(recurse=False))
        return bool(params) and all(p.requires_grad == trainable for p in params) and all(
            inside[key] == owners[key] for key in inside)

    def visit(module: nn.Module, trainable: bool) -> None:
        for child in module.children():
            if id(child) in units:
                continue
            # A container is indexed, never called: FSDP would never gather a unit made of it (PEFT's lora_A).
            if not isinstance(child, CONTAINERS) and not any(id(m) in units for m in child.modules()) and (
                    uniform_and_unshared(child, trainable)):
                units.add(id(child))
            else:
                visit(child, trainable)

    visit(model, trainable=False)
    for block in blocks:
        if len({p.requires_grad for p in block.parameters()}) > 1:
            visit(block, trainable=True)
    return units


def shard_model(model: nn.Module, strategy) -> nn.Module:
    """Wrap the Hugging Face model in FSDP from ``LightningModule.configure_model``.

    Lightning wraps the LightningModule itself per stage (fit, validate, test) and, finding nested FSDP units on the
    second stage, skips the outer wrap: parameters of the outer unit (embeddings, head) would stay sharded. An FSDP
    unit that is an attribute of the LightningModule survives between stages. The wrap policy is ``fsdp_units``
    unless the strategy config names its own ``auto_wrap_policy``.
    """
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import wrap

    if not is_fsdp(strategy) or isinstance(model, FullyShardedDataParallel):
        return model
    overrides = {}
    if strategy.kwargs.get("auto_wrap_policy") is None:
        units = fsdp_units(model)
        overrides["auto_wrap_policy"] = lambda module, recurse, nonwrapped_numel: recurse or id(module) in units
    return wrap(model, **overrides)


@contextlib.contextmanager
def job_scoped_distributed():
    """Undo what a multi-process Trainer leaves in this process, so the next job of an in-process sweep starts clean.

    Lightning keeps the process group alive and writes ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_PORT``, ... into
    ``os.environ``; the next job would reuse a group whose peers have exited, or believe its ranks are launched
    externally.
    """
    saved = dict(os.environ)
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(saved)
