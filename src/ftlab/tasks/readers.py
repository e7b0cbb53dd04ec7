"""Reading data files and splitting them, shared by every task: tables, split keys, sample limits, the ignore index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ftlab.assets import resolve_path
from ftlab.checks import Checker

SPLITS = ("train", "validation", "test")
SPLIT_PATHS = (("train", "path"), ("validation", "val_path"), ("test", "test_path"))  # data config key per split
TABULAR_SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
IGNORE_INDEX = -100  # label of positions the loss and the metrics skip (padding, prompts, non-first sub-tokens)


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


def sample_limit(cfg: dict[str, Any], split: str) -> int | None:
    """``max_train_samples`` for the training split, ``max_eval_samples`` for validation and test (None: all)."""
    return cfg.get("max_train_samples" if split == "train" else "max_eval_samples")


def split_items(raw: dict[str, list], key, val_size: float, test_size: float, seed: int) -> dict[str, list]:
    """Deduplicate the training items by ``key(item)`` (also against given validation / test items, and dropping
    blank ones), then split off the validation and test parts the source does not provide (seeded, at least one
    item each)."""
    seen = {key(item) for split in ("validation", "test") for item in raw.get(split, [])}
    items = []
    for item in raw["train"]:
        k = key(item)
        if k.strip() and k not in seen:
            seen.add(k)
            items.append(item)
    order = np.random.default_rng(seed).permutation(len(items)).tolist()
    n_test, n_val = (0 if split in raw else max(1, int(round(size * len(items))))
                     for split, size in (("test", test_size), ("validation", val_size)))
    parts = {"test": order[:n_test], "validation": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    return {split: raw[split] if split != "train" and split in raw else [items[i] for i in idx]
            for split, idx in parts.items()}


def check_columns(c: Checker, frame, file, columns: tuple[str, ...]) -> None:
    """Every configured column (``data.text_column``, ...) is in the table read from ``file``."""
    for col in columns:
        if c.get(col) not in frame.columns:
            c.fail(col, f"column absent from {file}; columns there: {', '.join(map(str, frame.columns))}")


def check_splits(c: Checker) -> None:
    """``data.val_size`` / ``test_size`` leave data in every split; sample limits are positive integers."""
    for key, provided in (("data.val_size", "data.val_path"), ("data.test_size", "data.test_path")):
        if c.fraction(key) and c.get(key) == 0 and c.get(provided) is None and c.get("data.source") != "hub":
            c.fail(key, f"must be > 0 when {provided} is not given (the split would be empty)")
    sizes = [c.get("data.val_size"), c.get("data.test_size")]
    if all(isinstance(v, (int, float)) for v in sizes) and sum(sizes) >= 1:
        c.fail("data.val_size", f"val_size + test_size = {sum(sizes)} leaves no training data")
    for key in ("data.max_train_samples", "data.max_eval_samples"):
        if c.get(key) is not None:
            c.positive(key, int)


def check_files(c: Checker, columns: tuple[str, ...]) -> None:
    """Each configured split path exists; a table has ``columns``; a folder needs ``data.source=folder``."""
    for key in (f"data.{name}" for _, name in SPLIT_PATHS):
        value = c.get(key)
        if value is None:
            if key == "data.path":
                c.fail(key, "required: the training data file or folder")
            continue
        path = Path(resolve_path(str(value)))
        if not path.exists():
            c.fail(key, f"no such file or directory: {path}")
        elif path.is_file() and path.suffix.lower() in TABULAR_SUFFIXES:
            check_columns(c, read_table(str(path)), path, columns)
        elif path.is_dir() and c.get("data.source") != "folder":
            c.fail(key, "is a folder; use data.source=folder, or give a file")
