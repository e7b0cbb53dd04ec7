"""What every task shares about its data: the split keys, sample limits, the ignore index, splitting and the checks of
``data.*`` (reading files is ``ftlab.tasks.tables``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ftlab.core.assets import resolve_path
from ftlab.core.checks import Checker, DataError
from ftlab.tasks.tables import TABULAR_SUFFIXES, read_table

SPLITS = ("train", "validation", "test")
SPLIT_PATHS = (("train", "path"), ("validation", "val_path"), ("test", "test_path"))  # data config key per split
# Keys under ``data.`` that every task reads; each task adds its own (Task.data_options).
COMMON_DATA_OPTIONS = ("source", "path", "val_path", "test_path", "val_size", "test_size", "max_train_samples",
                       "max_eval_samples", "num_workers", "cache_dir", "encoding_errors", "group_by_length")
IGNORE_INDEX = -100  # label of positions the loss and the metrics skip (padding, prompts, non-first sub-tokens)


# What an OS or a tool leaves beside the data, besides hidden names (.DS_Store, .ipynb_checkpoints, .git): read as
# data it would be a class of its own, or a "text" that is often not even UTF-8.
JUNK_NAMES = {"__macosx", "thumbs.db", "desktop.ini"}


def is_junk(name: str) -> bool:
    """Whether a file or folder name in a data folder is an OS's or a tool's (hidden, ``__MACOSX``, ``Thumbs.db``,
    ``desktop.ini``): never data."""
    return name.startswith(".") or name.lower() in JUNK_NAMES


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


def check_columns(c: Checker, columns: list, file, wanted: tuple[str, ...]) -> None:
    """Every configured column (``data.text_column``, ...) is among the ``columns`` of the table read from ``file``."""
    for col in wanted:
        if c.get(col) not in columns:
            c.fail(col, f"column absent from {file}; columns there: {', '.join(map(str, columns))}")


def check_splits(c: Checker) -> None:
    """``data.val_size`` / ``test_size`` leave data in every split; sample limits are positive integers."""
    if c.get("data.encoding_errors") is not None:
        c.choice("data.encoding_errors", ("strict", "replace"))
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
            try:
                table = read_table(str(path), c.get("data.encoding_errors") or "strict",
                                   reads=[c.get(key) for key in columns])
                check_columns(c, list(table.columns), path, columns)
            except DataError as err:
                c.problems.append(f"{key}: {err}")
        elif path.is_dir() and c.get("data.source") != "folder":
            c.fail(key, "is a folder; use data.source=folder, or give a file")
