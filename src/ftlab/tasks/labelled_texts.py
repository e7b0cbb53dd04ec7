"""Labelled texts: reading label folders, tables and hub datasets (their splits: ``labelled_splits``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ftlab.core.assets import resolve_path
from ftlab.core.checks import DataError
from ftlab.tasks.readers import SPLIT_PATHS
from ftlab.tasks.tables import CHUNK_ROWS, iter_table, read_text

log = logging.getLogger(__name__)

Examples = tuple[list[str], list[Any]]  # (texts, raw labels)


def read_folder(path: str, errors: str = "strict") -> Examples:
    """One sub-folder per label, one text file per example."""
    texts, labels = [], []
    for label_dir in sorted(p for p in Path(path).iterdir() if p.is_dir()):
        for file in sorted(label_dir.iterdir()):
            if file.is_file():
                texts.append(read_text(file, errors))
                labels.append(label_dir.name)
    return texts, labels


Chunks = Iterable[Examples]  # a split's rows, in chunks of at most tables.CHUNK_ROWS


class TableChunks:
    """A table's labelled rows, chunk by chunk (``_table_chunks``). Its labels are cells as written: they are typed
    once the whole column is known (``typed_labels``), as a whole-file reader would."""

    def __init__(self, chunks: Iterator[Examples]):
        self.chunks = chunks

    def __iter__(self) -> Iterator[Examples]:
        return iter(self.chunks)


def source_chunks(cfg: dict[str, Any]) -> dict[str, Chunks]:
    """Raw examples per available split, as given by the source (no cleaning yet), labels as strings: files are
    streamed in chunks (never held whole, ``TableChunks``), label folders and hub datasets come as one chunk."""
    source = cfg["source"]
    errors = cfg.get("encoding_errors", "strict")
    if source == "folder":
        texts, labels = read_folder(resolve_path(cfg["path"]), errors)
        return {"train": [(texts, labels)]}
    if source == "files":
        return {split: TableChunks(_table_chunks(resolve_path(cfg[key]), cfg["text_column"], cfg["label_column"],
                                                 errors))
                for split, key in SPLIT_PATHS if cfg.get(key)}
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
                out[split] = [([str(t) for t in part[cfg["text_column"]]], [str(v) for v in labels])]
        return out
    raise ValueError(f"data.source={source!r}; valid choices: folder, files, hub")


def load_source(cfg: dict[str, Any]) -> dict[str, Examples]:
    """``source_chunks`` with each split's chunks joined (and a table's labels typed): the whole source in memory
    (small data, tests)."""
    out = {}
    for split, chunks in source_chunks(cfg).items():
        texts, labels = [], []
        for chunk_texts, chunk_labels in chunks:
            texts += chunk_texts
            labels += chunk_labels
        if isinstance(chunks, TableChunks):
            typed = typed_labels(set(labels))
            labels = [typed[label] for label in labels]
        out[split] = (texts, labels)
    return out


def _table_chunks(path: str, text_column: str, label_column: str, errors: str) -> Iterator[Examples]:
    """A table's labelled rows, chunk by chunk; rows with an empty text or label are dropped with one warning for
    the file (never a class called ``nan``), and a file without any labelled row is a ``DataError``."""
    import pandas as pd

    dropped, where, kept = 0, [], 0
    for _, frame in iter_table(path, errors, CHUNK_ROWS, as_text=True):
        missing = pd.Series(index=frame.index, dtype=object)  # a JSON record without the key: an empty cell
        texts, labels = frame.get(text_column, missing), frame.get(label_column, missing)
        empty = texts.isna() | (texts.astype(str).str.strip() == "") | labels.isna() | (
            labels.astype(str).str.strip() == "")
        dropped += int(empty.sum())
        where += list(frame.index[empty][:5 - len(where)])  # iter_table indexes rows by their line
        kept += int((~empty).sum())
        if (~empty).any():
            yield texts[~empty].astype(str).tolist(), labels[~empty].astype(str).tolist()
    if not kept:
        raise DataError(f"{path}: no row has both a text ({text_column}) and a label ({label_column})")
    if dropped:
        log.warning("%s: %d row(s) with an empty %s or %s dropped (lines %s%s)", path, dropped, text_column,
                    label_column, ", ".join(map(str, where)), ", ..." if dropped > 5 else "")


BOOLEANS = {"True": "True", "TRUE": "True", "true": "True", "False": "False", "FALSE": "False", "false": "False"}


def typed_labels(cells: set[str]) -> dict[str, str]:
    """How each label cell of a table column reads once the column's type is known, the way pandas types a whole
    column: all whole numbers -> ``1`` (also ``01``, ``1.0``), all numbers -> ``1.5`` and ``1.0``, all booleans ->
    ``True`` / ``False``, anything else as written. Typing per chunk would make ``1`` and ``1.0`` two classes."""
    def number(cell: str) -> int | float | None:
        if "_" in cell:  # Python reads 1_000 as a number; a table reader does not
            return None
        for kind in (int, float):
            try:
                return kind(cell)
            except ValueError:
                continue
        return None

    numbers = {cell: number(cell) for cell in cells}
    if cells and all(v is not None for v in numbers.values()):
        whole = all(math.isfinite(v) and float(v).is_integer() for v in numbers.values())
        return {cell: str(int(v)) if whole else str(float(v)) for cell, v in numbers.items()}
    if cells and cells <= BOOLEANS.keys():
        return {cell: BOOLEANS[cell] for cell in cells}
    return {cell: cell for cell in cells}


def label_sort_key(label: Any) -> tuple[int, Any]:
    """Numbers in numeric order, then strings alphabetically."""
    try:
        return (0, float(label))
    except (TypeError, ValueError):
        return (1, str(label))
