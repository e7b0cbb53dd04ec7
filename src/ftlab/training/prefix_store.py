"""Where the frozen-prefix cache's activations live: each example's unpadded output of the last frozen block, filled
as the first epoch trains (one part file per process), published atomically, held in memory or memory-mapped, and
placed back into whatever padded batch an example lands in. What is cached and when: ``prefix_cache.py``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ftlab.core.atomic_files import building
from ftlab.core.checks import FtlabError
from ftlab.model.anatomy import block_stack
from ftlab.strategies.frozen_prefix import before_blocks

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
# A recomputed prefix and its cached copy differ only by the summation order of batches padded to other widths.
STALE_TOLERANCE = {"rtol": 1e-3, "atol": 1e-4}


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
