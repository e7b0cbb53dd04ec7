"""Text-classification data: load a source, deduplicate, split, tokenise once (cached), batch with dynamic padding."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from ftlab.assets import resolve_path
from ftlab.samplers import ExactDistributedSampler, ResumableSampler

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the prepared layout changes
SPLITS = ("train", "validation", "test")
TABULAR_SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}

Examples = tuple[list[str], list[Any]]  # (texts, raw labels)


def read_table(path: str):
    """Read a csv / json / jsonl / parquet file into a pandas DataFrame."""
    import pandas as pd

    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".json", ".jsonl"):
        with open(path, encoding="utf-8") as f:
            first = f.read(1).strip()
        lines = suffix == ".jsonl" or first != "["
        return pd.read_json(path, lines=lines)
    raise ValueError(f"unsupported data file {path!r}; valid suffixes: {', '.join(TABULAR_SUFFIXES)}")


def read_folder(path: str) -> Examples:
    """One sub-folder per label, one text file per example."""
    texts, labels = [], []
    for label_dir in sorted(p for p in Path(path).iterdir() if p.is_dir()):
        for file in sorted(label_dir.iterdir()):
            if file.is_file():
                texts.append(file.read_text(encoding="utf-8", errors="replace"))
                labels.append(label_dir.name)
    return texts, labels


def load_source(cfg: dict[str, Any]) -> dict[str, Examples]:
    """Raw examples per available split, as given by the source (no cleaning yet)."""
    source = cfg["source"]
    if source == "folder":
        return {"train": read_folder(resolve_path(cfg["path"]))}
    if source == "files":
        out = {}
        for split, key in (("train", "path"), ("validation", "val_path"), ("test", "test_path")):
            if cfg.get(key):
                frame = read_table(resolve_path(cfg[key]))
                out[split] = (frame[cfg["text_column"]].astype(str).tolist(), frame[cfg["label_column"]].tolist())
        return out
    if source == "hub":
        import datasets

        ds = datasets.load_dataset(cfg["name"], cfg.get("config_name"))
        out = {}
        for split, key in (("train", "train_split"), ("validation", "val_split"), ("test", "test_split")):
            if cfg.get(key):
                part = ds[cfg[key]]
                feature = part.features[cfg["label_column"]]
                labels = part[cfg["label_column"]]
                if hasattr(feature, "int2str"):
                    labels = [feature.int2str(i) for i in labels]
                out[split] = ([str(t) for t in part[cfg["text_column"]]], labels)
        return out
    raise ValueError(f"data.source={source!r}; valid choices: folder, files, hub")


def label_sort_key(label: Any) -> tuple[int, Any]:
    """Numbers in numeric order, then strings alphabetically."""
    try:
        return (0, float(label))
    except (TypeError, ValueError):
        return (1, str(label))


def clean_and_split(
    raw: dict[str, Examples], val_size: float, test_size: float, seed: int
) -> tuple[dict[str, Examples], list[str]]:
    """Deduplicate, remove train texts that leak into val/test, split what is missing (stratified, seeded).

    Returns the splits with labels as strings and the sorted label names.
    """
    def dedupe(texts, labels, exclude=frozenset()):
        seen, keep_t, keep_l = set(exclude), [], []
        for text, label in zip(texts, labels):
            key = " ".join(text.split())
            if key and key not in seen:
                seen.add(key)
                keep_t.append(text)
                keep_l.append(str(label))
        return keep_t, keep_l

    held_out = {split: dedupe(*raw[split]) for split in ("validation", "test") if split in raw}
    held_keys = {" ".join(t.split()) for texts, _ in held_out.values() for t in texts}
    train_texts, train_labels = dedupe(*raw["train"], exclude=held_keys)

    rng = np.random.default_rng(seed)
    labels_arr = np.array(train_labels)
    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    fractions = {"validation": 0.0 if "validation" in held_out else val_size,
                 "test": 0.0 if "test" in held_out else test_size}
    for label in sorted(set(train_labels)):
        idx = rng.permutation(np.flatnonzero(labels_arr == label)).tolist()
        n_test = int(round(fractions["test"] * len(idx)))
        n_val = int(round(fractions["validation"] * len(idx)))
        parts["test"] += idx[:n_test]
        parts["validation"] += idx[n_test:n_test + n_val]
        parts["train"] += idx[n_test + n_val:]

    splits = dict(held_out)
    for split, idx in parts.items():
        if split in held_out:
            continue
        order = rng.permutation(np.array(idx, dtype=int)).tolist()
        splits[split] = ([train_texts[i] for i in order], [train_labels[i] for i in order])
    names = sorted({label for _, labels in splits.values() for label in labels}, key=label_sort_key)
    return splits, names


def fingerprint_path(path: str) -> list:
    """Cheap identity of a file or folder tree: relative names, sizes and modification times."""
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return [(str(p.relative_to(root)) if p != root else p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files]


class TextClassificationData(L.LightningDataModule):
    """Prepares a text-classification dataset once (cached on disk) and serves dynamically padded batches."""

    def __init__(self, data: dict[str, Any], tokenizer, max_length: int, batch_size: int,
                 eval_batch_size: int | None = None, seed: int = 42):
        super().__init__()
        self.cfg = dict(data)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.seed = seed
        self.datasets = None
        self.label_names: list[str] = []
        self.train_sampler: ResumableSampler | None = None
        self._resume: tuple[int, int] | None = None

    def cache_key(self) -> str:
        """Hash of everything that determines the prepared data."""
        ident = {k: v for k, v in self.cfg.items() if k not in ("num_workers", "cache_dir")}
        for key in ("path", "val_path", "test_path"):
            if self.cfg.get(key) and self.cfg["source"] != "hub":
                ident[f"{key}_files"] = fingerprint_path(resolve_path(self.cfg[key]))
        tok_dir = Path(self.tokenizer.name_or_path)
        ident["tokenizer"] = fingerprint_path(str(tok_dir)) if tok_dir.is_dir() else self.tokenizer.name_or_path
        ident.update(max_length=self.max_length, seed=self.seed, format=CACHE_FORMAT)
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def cache_path(self) -> Path:
        return Path(os.path.expanduser(self.cfg["cache_dir"])) / "data" / self.cache_key()

    def prepare_data(self) -> None:
        """Build and cache the tokenised splits unless an identical preparation is cached already."""
        if self.cache_path.exists():
            log.info("data: reusing cache %s", self.cache_path)
            return
        import datasets

        raw = load_source(self.cfg)
        splits, names = clean_and_split(raw, self.cfg["val_size"], self.cfg["test_size"], self.seed)
        limits = {"train": self.cfg.get("max_train_samples"), "validation": self.cfg.get("max_eval_samples"),
                  "test": self.cfg.get("max_eval_samples")}
        features = datasets.Features({"text": datasets.Value("string"), "labels": datasets.ClassLabel(names=names)})
        index = {name: i for i, name in enumerate(names)}
        built = {}
        for split in SPLITS:
            texts, labels = splits[split]
            n = limits[split] or len(texts)
            built[split] = datasets.Dataset.from_dict(
                {"text": texts[:n], "labels": [index[label] for label in labels[:n]]}, features=features)
        dsd = datasets.DatasetDict(built).map(
            self._tokenize, batched=True, remove_columns=["text"], desc="tokenizing")
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=self.cache_path.parent, prefix=".tmp-")
        dsd.save_to_disk(tmp)
        try:
            os.rename(tmp, self.cache_path)  # atomic: concurrent jobs never see half a cache
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race with identical content
        log.info("data: prepared %s", {s: len(d) for s, d in dsd.items()})

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Make the training pass over ``epoch`` skip the ``batches_done`` batches a checkpoint already trained on."""
        self._resume = (epoch, batches_done * self.batch_size)
        if self.train_sampler is not None:
            self.train_sampler.resume(*self._resume)

    def _tokenize(self, batch: dict[str, list]) -> dict[str, list]:
        return self.tokenizer(batch["text"], truncation=True, max_length=self.max_length)

    def setup(self, stage: str | None = None) -> None:
        """Load the cached splits (memory-mapped Arrow) and the label names."""
        if self.datasets is not None:
            return
        import datasets

        self.datasets = datasets.load_from_disk(str(self.cache_path))
        self.label_names = list(self.datasets["train"].features["labels"].names)

    @property
    def split_sizes(self) -> dict[str, int]:
        return {split: len(self.datasets[split]) for split in SPLITS}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        from transformers import DataCollatorWithPadding

        workers = self.cfg.get("num_workers", 0)
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        dataset = self.datasets[split]
        if shuffle:
            sampler = ResumableSampler(dataset, self.seed, replicas, rank)
            self.train_sampler = sampler
            if self._resume is not None:
                sampler.resume(*self._resume)
        else:
            sampler = ExactDistributedSampler(dataset, replicas, rank)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            sampler=sampler,
            # Its own generator: iterating a loader must not consume the global RNG (dropout), for exact resumption.
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=DataCollatorWithPadding(self.tokenizer),
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
