"""The frozen-prefix cache (``cache_frozen=true``): the output of the frozen embeddings and bottom blocks, computed
once per training example, so that later epochs, and later jobs of a sweep with the same frozen prefix, run only
the trained top of the network.

Exact by construction: the prefix runs in eval mode (``strategy.frozen_dropout=false`` is required), so its output
for an example is the same in every epoch. Each example's activations are stored unpadded (its real tokens only)
and placed back at the real positions of whatever batch it lands in, so dynamic padding keeps working. Until every
training example is cached, a step runs the whole network and keeps what the last frozen block produced; when the
cache is complete (at an epoch's end) it is published on disk under ``<data.cache_dir>/prefix/<key>``, built aside
and renamed, keyed by the checkpoint's files, the prepared data (which covers ``max_length``), the frozen boundary
and the precision. From then on a step skips the frozen blocks and reads the cache. The first step of every process
runs the whole network anyway and compares its prefix with the cache: a stale cache is dropped and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftlab.core.checks import FtlabError, memory_mib
from ftlab.core.trainer_settings import trainer_settings
from ftlab.data.datamodule import fingerprint_path, token_counts
from ftlab.model.anatomy import block_stack
from ftlab.model.loading import checkpoint_dir
from ftlab.strategies import strategy_label
from ftlab.strategies.frozen_prefix import frozen_boundary
from ftlab.training.prefix_store import CACHE_FORMAT, PrefixCache

log = logging.getLogger(__name__)


def cache_key(checkpoint_files: list, data_key: str, boundary: int, precision: str) -> str:
    """Hash of everything that determines the cached activations."""
    ident = {"checkpoint": checkpoint_files, "data": data_key, "boundary": boundary, "precision": precision,
             "torch": torch.__version__.split("+")[0], "format": CACHE_FORMAT}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_plan(lengths: list[int], hidden: int, boundary: int, value_bytes: int, budget_bytes: int) -> dict[str, Any]:
    """What the cache will hold, for ``plan.json``: before training, from the training split's token counts; values
    in the weights' dtype (``value_bytes`` each)."""
    size = sum(lengths) * hidden * value_bytes
    return {"frozen_blocks": boundary, "examples": len(lengths), "tokens": sum(lengths), "bytes": size,
            "held_in": "memory" if size <= budget_bytes else "disk (memory-mapped)"}


def build_prefix_cache(cfg, datamodule, model: nn.Module) -> tuple[PrefixCache, dict[str, Any]]:
    """The job's frozen-prefix cache and its entry in ``plan.json``; an ``FtlabError`` if the model shares its blocks
    or the strategy leaves no block frozen (known only once the strategy has chosen what trains)."""
    from omegaconf import OmegaConf


    boundary = frozen_boundary(model)
    if len(block_stack(model)[1]) != model.config.num_hidden_layers:
        raise FtlabError(f"cache_frozen=true: {type(model).__name__} shares its blocks across layers, so no block's "
                         "output is the frozen prefix's; valid: cache_frozen=false")
    if boundary == 0:
        label = strategy_label(OmegaConf.to_container(cfg.strategy, resolve=True))
        raise FtlabError(f"cache_frozen=true: strategy {label} trains the embeddings or the lowest block, so there is "
                         "no frozen prefix to cache; valid: cache_frozen=false, or a strategy that freezes the bottom "
                         "blocks (partial, head_only, lora with strategy.layers)")
    settings = trainer_settings(cfg.trainer)
    lengths = token_counts(datamodule.datasets["train"])
    checkpoint = fingerprint_path(checkpoint_dir(OmegaConf.to_container(cfg.model, resolve=True)))
    directory = Path(datamodule.cache_path).parent.parent / "prefix" / cache_key(checkpoint, datamodule.cache_key(),
                                                                                 boundary, settings.precision)
    budget = int(memory_mib(str(cfg.cache_frozen_memory)) * 2**20)
    job = hashlib.sha256(str(Path(cfg.output_dir).resolve()).encode()).hexdigest()[:12]  # the same on every rank
    cache = PrefixCache(directory, lengths, boundary, budget, job)
    return cache, cache_plan(lengths, model.config.hidden_size, boundary, settings.weight_bytes, budget)
