"""Reading data files and splitting them, shared by every task: tables, split keys, sample limits, the ignore index."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import logging

import numpy as np

from ftlab.assets import resolve_path
from ftlab.checks import Checker, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SPLIT_PATHS = (("train", "path"), ("validation", "val_path"), ("test", "test_path"))  # data config key per split
TABULAR_SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# Keys under ``data.`` that every task reads; each task adds its own (Task.data_options).
COMMON_DATA_OPTIONS = ("source", "path", "val_path", "test_path", "val_size", "test_size", "max_train_samples",
                       "max_eval_samples", "num_workers", "cache_dir", "encoding_errors", "group_by_length")
IGNORE_INDEX = -100  # label of positions the loss and the metrics skip (padding, prompts, non-first sub-tokens)


def read_text(path: str | Path, errors: str = "strict",
              fix: str = "save the file as UTF-8, or set data.encoding_errors=replace") -> str:
    """A file's text, which must be UTF-8 (a byte-order mark is dropped): a ``DataError`` names the file, the line of
    the first bad byte and ``fix``.

    ``errors="replace"`` (``data.encoding_errors``) reads such bytes as U+FFFD instead, with a warning naming the file.
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        if errors == "replace":
            log.warning("%s:%d: not UTF-8; undecodable bytes read as U+FFFD (data.encoding_errors=replace)", path, line)
            return data.decode("utf-8-sig", errors="replace")
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {data[err.start]:#04x}); {fix}") from None


def _json_rows(path: str, text: str, lines: bool) -> list[dict]:
    """Records of a JSON array file or a JSON-lines file; a broken line is named with its number."""
    if not lines:
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        numbered = list(enumerate(rows if isinstance(rows, list) else [rows], start=1))
    else:
        numbered = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    numbered.append((lineno, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg}); each line must be one JSON "
                                    "object") from None
    for where, row in numbered:
        if not isinstance(row, dict):
            kind = "line" if lines else "item"
            raise DataError(f"{path}: {kind} {where} is {type(row).__name__}, not a JSON object with named columns")
    return [row for _, row in numbered]


def _read_csv(path: str, text: str):
    """pandas' CSV reader, strict: a row with more fields than the header is an error, not an implicit index."""
    import warnings

    import pandas as pd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(io.StringIO(text), index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, pd.errors.ParserWarning) as err:
        where = ""
        if "EOF inside string" not in str(err):  # an unterminated quote: pandas names the row it starts at
            reader = csv.reader(io.StringIO(text))
            width = len(next(reader, []))
            bad = next((reader.line_num for row in reader if row and len(row) != width), None)
            where = f" at line {bad}: expected {width} fields" if bad else ""
        raise DataError(f"{path}: malformed CSV{where} ({' '.join(str(err).split())})") from None


def read_table(path: str, errors: str = "strict"):
    """Read a csv / json / jsonl / parquet file into a pandas DataFrame with at least one row.

    Any problem (not UTF-8, malformed CSV or JSON, no rows) is a ``DataError`` naming the file and, where it can be
    known, the line.
    """
    import pandas as pd

    suffix = Path(path).suffix.lower()
    if suffix not in TABULAR_SUFFIXES:
        raise DataError(f"{path}: unsupported data file; valid suffixes: {', '.join(TABULAR_SUFFIXES)}")
    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # pyarrow's errors have no common base class
            raise DataError(f"{path}: not a readable parquet file ({str(err).splitlines()[0]})") from None
    else:
        text = read_text(path, errors)
        if not text.strip():
            raise DataError(f"{path}: the file is empty")
        if suffix == ".csv":
            frame = _read_csv(path, text)
        else:
            frame = pd.DataFrame(_json_rows(path, text, lines=suffix == ".jsonl" or not text.lstrip().startswith("[")))
    if len(frame) == 0:
        raise DataError(f"{path}: no rows (a header, or an empty list, only)")
    return frame


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
                check_columns(c, read_table(str(path), c.get("data.encoding_errors") or "strict"), path, columns)
            except DataError as err:
                c.problems.append(f"{key}: {err}")
        elif path.is_dir() and c.get("data.source") != "folder":
            c.fail(key, "is a folder; use data.source=folder, or give a file")
