"""Multi-process launches under Hydra: make Lightning's DDP re-launch start ranks > 0 on this job only."""

from __future__ import annotations

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
    with read_write(HydraConfig.instance().cfg), open_dict(HydraConfig.instance().cfg):
        HydraConfig.instance().cfg.hydra.run.dir = job_dir
