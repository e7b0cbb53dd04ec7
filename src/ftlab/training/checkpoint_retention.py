"""Which checkpoints a job keeps once it has succeeded, or a search trial was pruned (``keep_checkpoints``), and the
disk a job uses.

While a job runs it needs ``best.ckpt`` (what it tests and exports) and ``last.ckpt`` (what an interrupted job
resumes from, with the optimizer state: about three times the weights under AdamW). Once ``model/`` and
``metrics.json`` are written, a finished job resumes nothing, and the report, predict, export and serve read
``model/``: a 64-job sweep of a 7B model that kept both would hold about 64 x 112 GB.

- ``all``: keep both (today's layout before this setting).
- ``best``: remove ``last.ckpt`` (the default for a single job: ``best.ckpt`` reloads in Lightning).
- ``none``: remove both; ``model/`` is the result (the default in a sweep, ``-m``, and for search trials).
"""

from __future__ import annotations

import logging
import shutil
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from ftlab.core.checks import Checker

log = logging.getLogger(__name__)

KEEP_CHOICES = ("all", "best", "none")
CHECKPOINTS = {"best": "best.ckpt", "last": "last.ckpt"}
# What each policy removes: Lightning versions a name it finds taken (best-v1.ckpt), and DeepSpeed saves a
# checkpoint as a directory of that name.
REMOVED = {"all": (), "best": ("last*.ckpt",), "none": ("best*.ckpt", "last*.ckpt")}


def check_keep_checkpoints(c: Checker) -> None:
    """``keep_checkpoints`` is null (the default for the kind of run) or one of ``KEEP_CHOICES``."""
    c.choice("keep_checkpoints", (None, *KEEP_CHOICES))


def in_a_sweep(cfg) -> bool:
    """Whether this job is one of a multirun (``-m``) or a search trial."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if cfg.get("search") and cfg.search.get("trial") is not None:
        return True
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # not inside @hydra.main
        return False


def keep_policy(cfg) -> str:
    """The ``keep_checkpoints`` value in force: the configured one, else ``none`` in a sweep and ``best`` alone."""
    return cfg.get("keep_checkpoints") or ("none" if in_a_sweep(cfg) else "best")


def removed_after_success(policy: str) -> tuple[str, ...]:
    """The checkpoint files (of ``disk_plan``) that ``policy`` removes once the job's results are written."""
    return tuple(name for name in CHECKPOINTS.values() if any(fnmatch(name, p) for p in REMOVED[policy]))


def prune_checkpoints(checkpoint_dir: Path, policy: str) -> int:
    """Remove what ``policy`` does not keep from a succeeded job's ``checkpoints/`` (files, or DeepSpeed's
    directories); returns the bytes freed."""
    freed = 0
    for pattern in REMOVED[policy]:
        for path in sorted(checkpoint_dir.glob(pattern)) if checkpoint_dir.is_dir() else ():
            if path.is_dir():
                freed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                shutil.rmtree(path)
            else:
                freed += path.stat().st_size
                path.unlink()
    if checkpoint_dir.is_dir() and not any(checkpoint_dir.iterdir()):
        checkpoint_dir.rmdir()
    if freed:
        log.info("keep_checkpoints=%s: removed %.1f MiB of checkpoints", policy, freed / 2**20)
    return freed


def disk_plan(memory_bytes: dict[str, int], policy: str) -> dict[str, Any]:
    """The disk a job uses, from the plan's weights and optimizer state (fp32 files, as saved): ``model/`` and
    ``best.ckpt`` each hold the weights, ``last.ckpt`` the weights and the optimizer state."""
    weights = memory_bytes["weights"]
    files = {"model/": weights, CHECKPOINTS["best"]: weights, CHECKPOINTS["last"]: weights
             + memory_bytes.get("optimizer_state", 0)}
    removed = removed_after_success(policy)
    return {"keep_checkpoints": policy, "files": files, "while_training": sum(files.values()),
            "after_success": sum(size for name, size in files.items() if name not in removed)}
