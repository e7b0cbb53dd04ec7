"""Multi-process launches under Hydra: make Lightning's DDP re-launch start ranks > 0 on this job only."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from omegaconf import open_dict, read_write


def spawns_processes(trainer_cfg) -> bool:
    """Whether Lightning will start extra processes for this trainer config (DDP-like strategy or >1 device)."""
    strategy = str(trainer_cfg.get("strategy", "auto"))
    devices = trainer_cfg.get("devices", 1)
    nodes = trainer_cfg.get("num_nodes", 1) or 1
    many = devices in (-1, "-1", "auto") or (str(devices).isdigit() and int(devices) > 1) or int(nodes) > 1
    return many or any(name in strategy for name in ("ddp", "fsdp", "deepspeed"))


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


BLOCK_SUFFIXES = ("Layer", "Block")


def block_wrap_policy(module, recurse: bool, nonwrapped_numel: int) -> bool:
    """FSDP auto-wrap policy: one FSDP unit per transformer block (``BertLayer``, ``GPT2Block``,
    ``LlamaDecoderLayer``, ...), so a frozen block and a trainable block never share a flat parameter."""
    if recurse:
        return True
    return type(module).__name__.endswith(BLOCK_SUFFIXES) and any(True for _ in module.parameters())


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
