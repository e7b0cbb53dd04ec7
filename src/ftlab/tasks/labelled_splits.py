"""Deduplicated, leak-free, seeded stratified splits of labelled texts, held in memory or, for data larger than
memory, written to Arrow files as they stream in."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ftlab.core.checks import DataError
from ftlab.tasks.labelled_texts import Chunks, Examples, SourceChunks, label_sort_key, typed_labels
from ftlab.tasks.readers import SPLIT_PATHS

log = logging.getLogger(__name__)


def text_key(text: str) -> bytes:
    """What makes two texts duplicates (the same words, white space aside), as a short digest: a set of these for a
    few hundred thousand documents takes megabytes, not the documents' size. Blank texts have the empty key."""
    words = " ".join(text.split())
    return hashlib.blake2b(words.encode("utf-8", "surrogatepass"), digest_size=16).digest() if words else b""


class KeptRows:
    """One split's rows that survive deduplication, in order: their keys and labels here, their texts in a list or,
    with ``path``, in an Arrow file written chunk by chunk (memory-mapped when read back)."""

    def __init__(self, path: Path | None = None, exclude: set[bytes] = frozenset()):
        self.path, self.exclude = path, exclude
        self.seen: dict[bytes, int] = {}  # key -> row number
        self.labels: list[str] = []
        self.where: list[Any] = []  # where each kept row is in its source (a line, a file)
        self.cells: set[str] = set()  # every label of the source, duplicates' too (what types the column)
        self.clashes: dict[tuple[str, str], tuple] = {}  # (label, another's) -> the first such duplicate's rows, text
        self.count = 0  # rows read
        self.texts: list[str] = []
        self.excluded: set[bytes] = set()  # keys of rows dropped because ``exclude`` holds them
        self.writer = self.dataset = None
        self.closed = False
        if path is not None:
            import pyarrow as pa

            self.writer = pa.ipc.new_stream(str(path), pa.schema([("text", pa.large_string())]))

    def add(self, texts: list[str], labels: list[Any], where: list[Any] | None = None) -> None:
        """Keep the rows whose key is new, not blank and not excluded; labels become strings. A duplicate under
        another label (as written: ``1`` and ``1.0`` may be one class) is remembered for ``finish``; ``where``: each
        row's place in its source (None: its number)."""
        kept_texts = []
        for i, (text, label) in enumerate(zip(texts, labels)):
            self.count += 1
            label, place = str(label), self.count if where is None else where[i]
            self.cells.add(label)
            key = text_key(text)
            if key in self.exclude:
                self.excluded.add(key)
            elif key and key not in self.seen:
                self.seen[key] = len(self.labels)
                kept_texts.append(text)
                self.labels.append(label)
                self.where.append(place)
            elif key and (first := self.labels[self.seen[key]]) != label:
                self.clashes.setdefault((first, label), (self.where[self.seen[key]], place, text))
        if self.writer is None:
            self.texts += kept_texts
        elif kept_texts:
            import pyarrow as pa

            self.writer.write_batch(pa.record_batch([pa.array(kept_texts, pa.large_string())], names=["text"]))

    def finish(self, source: SourceChunks) -> None:
        """Once every row is read: a table's labels typed as their whole column reads (``typed_labels``), and a
        ``DataError`` for a text under two labels (keeping either would train on a guess)."""
        typed = ({cell: cell for cell in self.cells} if source.typed
                 else typed_labels(self.cells, source.source, distinct_case=source.distinct_case))
        for (first, label), (first_at, at, text) in self.clashes.items():
            if typed[first] != typed[label]:
                places = f"{source.unit}s {first_at} and {at}" if isinstance(at, int) else f"{first_at} and {at}"
                raise DataError(f"{source.source}: {places} have the same text ({text[:60]!r}) but labels {first!r} "
                                f"and {label!r}; valid: one label per text (correct or remove one of them)")
        self.labels = [typed[label] for label in self.labels]
        self.cells = set(typed.values())

    def close(self) -> None:
        """Finish the Arrow file (it is complete once its writer is closed); again is a no-op."""
        if self.writer is not None and not self.closed:
            self.writer.close()
            self.closed = True

    def rows(self, order: list[int] | None = None):
        """``(texts, labels)`` of the kept rows in ``order`` (None: as kept); the texts are a list, or a
        ``datasets.Dataset`` with a ``text`` column read from the Arrow file."""
        order = range(len(self.labels)) if order is None else order
        labels = [self.labels[i] for i in order]
        if self.writer is None:
            return [self.texts[i] for i in order], labels
        if self.dataset is None:
            import datasets

            self.close()
            self.dataset = datasets.Dataset.from_file(str(self.path))
        return self.dataset.select(order), labels

    def text(self, key: bytes) -> str:
        """The kept text with this key."""
        texts, _ = self.rows([self.seen[key]])
        return texts[0] if isinstance(texts, list) else texts[0]["text"]


def clean_and_split(raw: dict[str, Examples | Chunks], val_size: float, test_size: float, seed: int,
                    work_dir: Path | None = None) -> tuple[dict[str, tuple], list[str]]:
    """Deduplicate, remove train texts that leak into val/test, split what is missing (stratified, seeded).

    ``raw``: per split, ``(texts, labels)``, an iterable of such chunks, or a source's chunks (``SourceChunks``: a
    table's labels typed once the split is read). Returns each split's ``(texts, labels)``, labels as strings, and the
    sorted label names; the texts are a list or, with ``work_dir`` (where the kept rows are written as Arrow files,
    for data larger than memory), a ``datasets.Dataset`` with a ``text`` column. A text under two labels in one
    split's source is a ``DataError`` naming both rows.
    """
    kept: dict[str, KeptRows] = {}

    def read(split: str, exclude: set[bytes] = frozenset()) -> KeptRows:
        value = raw[split]
        if not isinstance(value, SourceChunks):  # rows already read: named by the split's data key
            value = SourceChunks(((texts, labels, None) for texts, labels in
                                  ([value] if isinstance(value, tuple) else value)),
                                 f"data.{dict(SPLIT_PATHS)[split]}", typed=True)
        rows = kept[split] = KeptRows(None if work_dir is None else Path(work_dir) / f"{split}.arrow", exclude)
        for texts, labels, where in value:
            rows.add(texts, labels, where)
        rows.finish(value)
        return rows

    try:
        held_out = {split: read(split) for split in ("validation", "test") if split in raw}
        train = read("train", exclude=set().union(*(rows.seen for rows in held_out.values())))
        for split, rows in held_out.items():
            unseen = sorted(set(rows.labels) - train.cells, key=label_sort_key)
            if unseen:
                raise DataError(f"data.{dict(SPLIT_PATHS)[split]}: label(s) {', '.join(map(repr, unseen))} never occur "
                                f"in the training data, so the model cannot learn them; valid: "
                                f"{', '.join(sorted(train.cells))}")
        if len(held_out) == 2 and (both := held_out["validation"].seen.keys() & held_out["test"].seen.keys()):
            example = held_out["test"].text(min(both, key=held_out["test"].seen.get))
            raise DataError(f"data.val_path and data.test_path share {len(both)} text(s) (e.g. {example[:60]!r}): "
                            "choosing the checkpoint on test texts biases the test score; make the files disjoint")
        if train.excluded and not train.labels:
            raise DataError("every training text also appears in data.val_path / data.test_path; the held-out files "
                            "must hold texts the model does not train on")
        if train.excluded:
            log.warning("%d training text(s) also in the validation / test files: removed from training",
                        len(train.excluded))
        parts = stratified_parts(train.labels, {"validation": 0.0 if "validation" in held_out else val_size,
                                                "test": 0.0 if "test" in held_out else test_size}, seed,
                                 set(held_out))
        splits = {split: rows.rows() for split, rows in held_out.items()}
        splits.update({split: train.rows(order) for split, order in parts.items()})
    finally:
        for rows in kept.values():
            rows.close()
    names = sorted(set(train.labels).union(*(rows.labels for rows in held_out.values())), key=label_sort_key)
    return splits, names


def stratified_parts(labels: list[str], fractions: dict[str, float], seed: int,
                     given: set[str] = frozenset()) -> dict[str, list[int]]:
    """Row numbers of each split the source does not give (``given``): per label (in sorted order), a seeded
    permutation whose first ``fractions["test"]`` go to test and next ``fractions["validation"]`` to validation; then
    each split is shuffled."""
    rng = np.random.default_rng(seed)
    labels_arr = np.array(labels)
    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for label in sorted(set(labels)):
        idx = rng.permutation(np.flatnonzero(labels_arr == label)).tolist()
        n_test = int(round(fractions["test"] * len(idx)))
        n_val = int(round(fractions["validation"] * len(idx)))
        parts["test"] += idx[:n_test]
        parts["validation"] += idx[n_test:n_test + n_val]
        parts["train"] += idx[n_test + n_val:]
    return {split: rng.permutation(np.array(idx, dtype=int)).tolist() for split, idx in parts.items()
            if split not in given}
