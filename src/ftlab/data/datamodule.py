"""The data module of every task: prepare once (cached on disk), then serve resumable, dynamically padded batches.

What is task-specific (reading, splitting, tokenising, collating) is asked of the job's ``Task`` (``ftlab.tasks``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from ftlab.core.assets import resolve_path
from ftlab.core.atomic_files import building
from ftlab.core.checks import DataError
from ftlab.data.samplers import ExactDistributedSampler, LengthGroupedSampler, ResumableSampler
from ftlab.tasks.readers import SPLIT_PATHS, SPLITS, is_junk
from ftlab.tasks.registry import get_task

log = logging.getLogger(__name__)

CACHE_FORMAT = 3  # bump when the prepared layout changes


def content_hash(path: str) -> str:
    """The bytes of a data file, or of every data file under a folder (OS and tool junk left out, as the readers
    leave it out), with their relative names: what two jobs must share to have read the same data. Contents, not
    times: a copy, a checkout or ``touch`` is the same data."""
    root = Path(path)
    files = [root] if root.is_file() else sorted(
        p for p in root.rglob("*") if p.is_file() and not any(is_junk(part) for part in p.relative_to(root).parts))
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(root) if file != root else ''}\0{file.stat().st_size}\0".encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def fingerprint_path(path: str) -> list:
    """Cheap identity of a file or folder tree: relative names, sizes and modification times (in nanoseconds: a file
    rewritten within the same second is still a different file)."""
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return [(str(p.relative_to(root)) if p != root else p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]


class Indexed(torch.utils.data.Dataset):
    """A prepared split whose rows also carry their position in it (``example_index``)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], "example_index": index}

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        return [{**row, "example_index": i} for i, row in zip(indices, self.dataset.__getitems__(indices))]


def indexed_collator(collate):
    """``collate`` for ``Indexed`` rows: the batch gains an ``example_index`` tensor."""
    def collate_indexed(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        index = torch.tensor([row.pop("example_index") for row in rows])
        return {**collate(rows), "example_index": index}
    return collate_indexed


def token_counts(dataset) -> list[int]:
    """Length in tokens of every row of a prepared split, read from its Arrow column (no Python pass over rows)."""
    import pyarrow.compute as pc

    column = dataset.with_format("arrow")[:]["input_ids"] if dataset._indices is not None else \
        dataset.data.column("input_ids")
    return pc.list_value_length(column).to_pylist()


class FineTuneData(L.LightningDataModule):
    """Prepares a task's dataset once (cached on disk, keyed by everything that shapes it) and serves batches."""

    def __init__(self, data: dict[str, Any], tokenizer, max_length: int, batch_size: int,
                 eval_batch_size: int | None = None, seed: int = 42, task: str = "text_classification",
                 index_train: bool = False):
        super().__init__()
        self.cfg = dict(data)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.seed = seed
        self.task = get_task(task)
        self.datasets = None
        self.label_names: list[str] = []
        self.train_sampler: ResumableSampler | None = None
        self.index_train = index_train  # training batches carry "example_index" (the frozen-prefix cache needs it)
        self._resume: tuple[int, int] | None = None

    def data_fingerprint(self) -> str:
        """Hash of the data settings and of the contents of the files they name (``content_hash``): two jobs of a
        sweep with different fingerprints read different data (``data/fingerprint`` in metrics.json; the report
        refuses to rank them together). Seed, tokenizer and length are not in it: a sweep varies those."""
        ident = self._settings()
        for _, key in SPLIT_PATHS:
            if self.cfg.get(key) and self.cfg["source"] != "hub":
                ident[f"{key}_files"] = content_hash(resolve_path(self.cfg[key]))
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.cfg.items() if k not in ("num_workers", "cache_dir", "group_by_length")}

    def cache_key(self) -> str:
        """Hash of everything that determines the prepared data (files by name, size and time: cheap to check)."""
        ident = self._settings()
        for _, key in SPLIT_PATHS:
            if self.cfg.get(key) and self.cfg["source"] != "hub":
                ident[f"{key}_files"] = fingerprint_path(resolve_path(self.cfg[key]))
        tok_dir = Path(self.tokenizer.name_or_path)
        ident["tokenizer"] = fingerprint_path(str(tok_dir)) if tok_dir.is_dir() else self.tokenizer.name_or_path
        ident.update(max_length=self.max_length, seed=self.seed, task=self.task.name, cache_format=CACHE_FORMAT)
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def cache_path(self) -> Path:
        return Path(os.path.expanduser(self.cfg["cache_dir"])) / "data" / self.cache_key()

    def prepare_data(self) -> None:
        """Build and cache the tokenised splits unless an identical preparation is cached already."""
        if self.datasets is not None:
            return  # Lightning calls this again at every fit / validate / test
        if self.cache_path.exists():
            log.info("data: reusing cache %s", self.cache_path)
            return
        with building(self.cache_path) as tmp:
            work = tmp / ".work"  # the task's intermediate files: inside the build, so a killed build leaves one folder
            work.mkdir()
            dsd, names = self.task.prepare(self.cfg, self.tokenizer, self.max_length, self.seed, work_dir=work)
            sizes = {split: len(dsd[split]) for split in SPLITS}
            for split, size in sizes.items():
                if size == 0:
                    raise DataError(f"data: the {split} split is empty after removing duplicates and blank rows and "
                                    f"splitting ({sizes}); add data, or raise data.val_size / data.test_size, or give "
                                    "data.val_path / data.test_path")
            dsd.save_to_disk(str(tmp))
            shutil.rmtree(work)
            (tmp / "labels.json").write_text(json.dumps(names))
        log.info("data: prepared %s", sizes)

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Make the training pass over ``epoch`` skip the ``batches_done`` batches a checkpoint already trained on."""
        self._resume = (epoch, batches_done * self.batch_size)
        if self.train_sampler is not None:
            self.train_sampler.resume(*self._resume)

    def setup(self, stage: str | None = None) -> None:
        """Load the cached splits (memory-mapped Arrow) and the label names."""
        if self.datasets is not None:
            return
        import datasets

        self.datasets = datasets.load_from_disk(str(self.cache_path))
        self.label_names = json.loads((self.cache_path / "labels.json").read_text())

    @property
    def split_sizes(self) -> dict[str, int]:
        return {split: len(self.datasets[split]) for split in SPLITS}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        workers = self.cfg.get("num_workers", 0)
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        dataset = self.datasets[split]
        collate = self.task.collator(self.tokenizer)  # pads to the batch's longest
        if not shuffle:
            sampler = ExactDistributedSampler(dataset, replicas, rank)
        else:
            if self.cfg.get("group_by_length"):
                sampler = LengthGroupedSampler(dataset, token_counts(dataset), self.batch_size, self.seed, replicas,
                                               rank)
            else:
                sampler = ResumableSampler(dataset, self.seed, replicas, rank)
            self.train_sampler = sampler
            if self._resume is not None:
                sampler.resume(*self._resume)
            if self.index_train:
                dataset, collate = Indexed(dataset), indexed_collator(collate)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            sampler=sampler,
            # Its own generator: iterating a loader must not consume the global RNG (dropout), for exact resumption.
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=collate,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def train_batches(self) -> int | None:
        """Batches in one epoch of the training dataloader (before Lightning's limits); None for a stream of unknown
        length."""
        try:
            return len(self.train_dataloader())
        except TypeError:  # an iterable dataset without a length
            return None

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
