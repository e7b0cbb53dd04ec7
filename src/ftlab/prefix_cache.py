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

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ftlab.caching import building
from ftlab.checks import Checker, FtlabError, memory_mib
from ftlab.models import block_stack
from ftlab.runtime.distributed import shards_the_model
from ftlab.strategies.frozen_prefix import before_blocks, frozen_boundary

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
# A recomputed prefix and its cached copy differ only by the summation order of batches padded to other widths.
STALE_TOLERANCE = {"rtol": 1e-3, "atol": 1e-4}
HALF_PRECISIONS = ("bf16-true", "16-true", "bf16", "16", "half")


def check_cache_frozen(c: Checker) -> None:
    """``cache_frozen`` needs deterministic frozen modules and one process per device; ``cache_frozen_memory`` is a
    size (``4GB``)."""
    c.flag("cache_frozen")
    memory = c.get("cache_frozen_memory")
    try:
        memory_mib(str(memory))
    except argparse.ArgumentTypeError:
        c.fail("cache_frozen_memory", "must be a memory size > 0 such as 4GB or 512MiB (bare numbers: MiB)")
    if c.get("cache_frozen") is not True:
        return
    if c.get("strategy.frozen_dropout") is not False:
        c.fail("cache_frozen", "needs strategy.frozen_dropout=false: with dropout in the frozen modules their output "
                               "changes every epoch and a cache would freeze one draw of it")
    if c.get("strategy.name") == "gradual_unfreezing":
        c.fail("cache_frozen", "gradual_unfreezing trains every block eventually: there is no frozen prefix to cache")
    if c.get("strategy.quantize"):
        c.fail("cache_frozen", "not with a quantized base (strategy.quantize); valid: cache_frozen=false")
    if shards_the_model(c.get("trainer.strategy")):
        c.fail("cache_frozen", f"trainer.strategy={c.get('trainer.strategy')!r} is not supported with the cache; "
                               "valid: auto, ddp and its variants")


def cache_key(checkpoint_files: list, data_key: str, boundary: int, precision: str) -> str:
    """Hash of everything that determines the cached activations."""
    ident = {"checkpoint": checkpoint_files, "data": data_key, "boundary": boundary, "precision": precision,
             "torch": torch.__version__.split("+")[0], "format": CACHE_FORMAT}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_plan(lengths: list[int], hidden: int, boundary: int, precision: str, budget_bytes: int) -> dict[str, Any]:
    """What the cache will hold, for ``plan.json``: before training, from the training split's token counts."""
    size = sum(lengths) * hidden * (2 if str(precision) in HALF_PRECISIONS else 4)
    return {"frozen_blocks": boundary, "examples": len(lengths), "tokens": sum(lengths), "bytes": size,
            "held_in": "memory" if size <= budget_bytes else "disk (memory-mapped)"}


def build_prefix_cache(cfg, datamodule, model: nn.Module) -> tuple[PrefixCache, dict[str, Any]]:
    """The job's frozen-prefix cache and its entry in ``plan.json``; an ``FtlabError`` if the model shares its blocks
    or the strategy leaves no block frozen (known only once the strategy has chosen what trains)."""
    from omegaconf import OmegaConf

    from ftlab.data import fingerprint_path, token_counts
    from ftlab.models import checkpoint_dir
    from ftlab.strategies import strategy_label

    boundary = frozen_boundary(model)
    if len(block_stack(model)[1]) != model.config.num_hidden_layers:
        raise FtlabError(f"cache_frozen=true: {type(model).__name__} shares its blocks across layers, so no block's "
                         "output is the frozen prefix's; valid: cache_frozen=false")
    if boundary == 0:
        label = strategy_label(OmegaConf.to_container(cfg.strategy, resolve=True))
        raise FtlabError(f"cache_frozen=true: strategy {label} trains the embeddings or the lowest block, so there is "
                         "no frozen prefix to cache; valid: cache_frozen=false, or a strategy that freezes the bottom "
                         "blocks (partial, head_only, lora with strategy.layers)")
    precision = str(cfg.trainer.get("precision", "32-true"))
    lengths = token_counts(datamodule.datasets["train"])
    checkpoint = fingerprint_path(checkpoint_dir(OmegaConf.to_container(cfg.model, resolve=True)))
    directory = Path(datamodule.cache_path).parent.parent / "prefix" / cache_key(checkpoint, datamodule.cache_key(),
                                                                                 boundary, precision)
    budget = int(memory_mib(str(cfg.cache_frozen_memory)) * 2**20)
    job = hashlib.sha256(str(Path(cfg.output_dir).resolve()).encode()).hexdigest()[:12]  # the same on every rank
    cache = PrefixCache(directory, lengths, boundary, budget, job)
    return cache, cache_plan(lengths, model.config.hidden_size, boundary, precision, budget)


class PrefixCache:
    """The cached output of block ``boundary - 1`` for every training example (see the module docstring)."""

    def __init__(self, directory: Path, lengths: list[int], boundary: int, budget_bytes: int, job_id: str):
        self.directory = directory
        self.lengths = lengths
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.boundary = boundary
        self.budget_bytes = budget_bytes
        self.values: Any = None  # the complete cache: a byte array in memory or a memory map
        self._load = False  # whether to read the memory map into memory before the next lookup
        self.hidden, self.dtype = 0, torch.float32
        self.tuple_output: bool | None = None  # the frozen block's output form, seen at this process's first step
        self.parts = directory.parent / f".{directory.name}.parts-{job_id}"
        self._part = None
        self.pending: dict[int, tuple[int, int]] = {}  # example -> (byte offset, byte length) in this rank's part
        self._open()

    # -- the published cache ------------------------------------------------------------------------------------
    def _open(self) -> None:
        manifest = self.directory / "manifest.json"
        if not manifest.is_file():
            return
        try:
            meta = json.loads(manifest.read_text())
            values = self.directory / "values.bin"
            itemsize = torch.empty(0, dtype=getattr(torch, meta["dtype"])).element_size()
            expected = int(self.offsets[-1]) * meta["hidden"] * itemsize
            problem = ("format" if meta.get("format") != CACHE_FORMAT else
                       "examples" if meta["examples"] != len(self.lengths) else
                       "values.bin missing" if not values.is_file() else
                       f"values.bin has {values.stat().st_size} bytes, not {expected}"
                       if values.stat().st_size != expected else None)
        except (OSError, ValueError, KeyError, AttributeError) as err:
            problem = f"unreadable manifest ({err})"
        if problem:
            log.warning("frozen-prefix cache %s is broken (%s): rebuilding it", self.directory, problem)
            return
        self.hidden, self.dtype = meta["hidden"], getattr(torch, meta["dtype"])
        in_memory = expected <= self.budget_bytes
        # Mapped now, read into memory at the first step that uses it (a plan_only run reads nothing).
        self.values, self._load = np.memmap(values, np.uint8, "r"), in_memory
        log.info("frozen-prefix cache: reusing %s (%.0f MiB, %s)", self.directory, expected / 2**20,
                 "in memory" if in_memory else "memory-mapped")

    @property
    def rank(self) -> int:
        # Asked when training runs: the process group does not exist yet when the cache is built.
        return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0

    @property
    def complete(self) -> bool:
        return self.values is not None

    def rows(self, index: int) -> torch.Tensor:
        """Example ``index``'s cached activations, ``[tokens, hidden]``."""
        row_bytes = self.hidden * torch.empty(0, dtype=self.dtype).element_size()
        start, end = self.offsets[index] * row_bytes, self.offsets[index + 1] * row_bytes
        return torch.from_numpy(np.array(self.values[start:end])).view(self.dtype).view(-1, self.hidden)

    # -- a training step ----------------------------------------------------------------------------------------
    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor], index: torch.Tensor):
        """``model(**batch)``, reading the frozen prefix from the cache when it is complete and checked."""
        _, stack = block_stack(model)
        frozen = list(stack)[:self.boundary]
        if self.complete and self.tuple_output is not None:
            if self._load:
                self.values, self._load = np.array(self.values), False
            cached = self._batch(index, batch["attention_mask"])
            embeddings = [m for m in before_blocks(model) if any(True for _ in m.parameters())]
            with _replaced([(m, cached) for m in embeddings] +
                           [(block, (cached,) if self.tuple_output else cached) for block in frozen]):
                return model(**batch)
        seen: list = []
        handle = frozen[-1].register_forward_hook(lambda module, args, output: seen.append(output))
        try:
            out = model(**batch)
        finally:
            handle.remove()
        if len(seen) != 1:
            raise FtlabError(f"cache_frozen=true: block {self.boundary - 1} ran {len(seen)} times in one forward pass "
                             "(a model that shares blocks across layers): there is no single output to cache")
        self._record(seen[0], index, batch["attention_mask"])
        return out

    def _batch(self, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(*mask.shape, self.hidden, dtype=self.dtype, device=mask.device)
        for row, i in enumerate(index.tolist()):
            real = mask[row].bool()
            values = self.rows(i)
            if values.shape[0] != int(real.sum()):
                raise FtlabError(f"frozen-prefix cache {self.directory}: example {i} has {values.shape[0]} cached "
                                 f"tokens but {int(real.sum())} in the batch; delete the directory and rerun")
            out[row, real] = values.to(out.device)
        return out

    def _record(self, output, index: torch.Tensor, mask: torch.Tensor) -> None:
        self.tuple_output = isinstance(output, tuple)
        hidden = (output[0] if self.tuple_output else output).detach()
        rows = [hidden[row, mask[row].bool()].cpu() for row in range(len(index))]
        if self.complete:
            cached = [self.rows(i) for i in index.tolist()]
            stale = torch.tensor([not all(torch.allclose(a.to(b.dtype), b, **STALE_TOLERANCE)
                                          for a, b in zip(rows, cached))], dtype=torch.int32, device=hidden.device)
            if torch.distributed.is_initialized():  # all ranks drop it or none: they must publish it together
                torch.distributed.all_reduce(stale, op=torch.distributed.ReduceOp.MAX)
            if not stale.item():
                return
            log.warning("frozen-prefix cache %s does not match this model's frozen blocks: rebuilding it",
                        self.directory)
            self.values = None
        self.hidden, self.dtype = hidden.shape[-1], hidden.dtype
        if self._part is None:
            shutil.rmtree(self.parts / f"rank{self.rank}", ignore_errors=True)  # an interrupted fill: start over
            (self.parts / f"rank{self.rank}").mkdir(parents=True, exist_ok=True)
            self._part = open(self.parts / f"rank{self.rank}" / "part.bin", "wb")
        for i, values in zip(index.tolist(), rows):
            if i not in self.pending:
                data = values.contiguous().view(torch.uint8).numpy().tobytes()
                self.pending[i] = (self._part.tell(), len(data))
                self._part.write(data)

    # -- completion -----------------------------------------------------------------------------------------------
    def sync(self) -> None:
        """At an epoch's end (every rank): publish the cache if the ranks together have computed every example."""
        if self.complete or (self._part is None and not torch.distributed.is_initialized()):
            return
        if self._part is not None:
            self._part.flush()
            os.fsync(self._part.fileno())
        shares = [(self.rank, self.pending, self.hidden, str(self.dtype).removeprefix("torch."))]
        if torch.distributed.is_initialized():
            gathered: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, shares[0])
            shares = gathered
        where = {i: (rank, span) for rank, pending, _, _ in shares for i, span in pending.items()}
        if len(where) < len(self.lengths):
            return  # an interrupted first epoch: the next one computes what is missing
        hidden, dtype = next((h, d) for _, pending, h, d in shares if pending)
        if self.rank == 0:
            self._publish(where, hidden, dtype)
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
        self._close_part()
        self._open()

    def _publish(self, where: dict, hidden: int, dtype: str) -> None:
        if self.directory.exists():
            shutil.rmtree(self.directory, ignore_errors=True)  # broken or stale (a sound one would have been used)
        with building(self.directory) as tmp:
            parts = {}
            with open(tmp / "values.bin", "wb") as out:
                for i in range(len(self.lengths)):
                    rank, (start, size) = where[i]
                    part = parts.get(rank) or parts.setdefault(rank, open(self.parts / f"rank{rank}" / "part.bin",
                                                                          "rb"))
                    part.seek(start)
                    out.write(part.read(size))
                out.flush()
                os.fsync(out.fileno())
            for part in parts.values():
                part.close()
            (tmp / "manifest.json").write_text(json.dumps({"format": CACHE_FORMAT, "examples": len(self.lengths),
                                                           "tokens": int(self.offsets[-1]), "hidden": hidden,
                                                           "dtype": dtype}))
        shutil.rmtree(self.parts, ignore_errors=True)
        log.info("frozen-prefix cache: published %s", self.directory)

    def _close_part(self) -> None:
        if self._part is not None:
            self._part.close()
            self._part = None
        self.pending = {}


@contextlib.contextmanager
def _replaced(stand_ins: list[tuple[nn.Module, Any]]):
    """The embeddings and the frozen blocks do no work: each returns a tensor of the shape the model expects there.
    Only the last frozen block's output (the cached one) reaches a trained block; the others' outputs only reach
    these stand-ins, and the embeddings' also the attention mask's dtype and shape."""
    for module, output in stand_ins:
        module.forward = lambda *args, _output=output, **kwargs: _output
    try:
        yield
    finally:
        for module, _ in stand_ins:
            del module.forward
