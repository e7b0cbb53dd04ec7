"""Labelled texts: reading label folders, tables and hub datasets, then deduplicated, leak-free stratified splits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ftlab.assets import resolve_path
from ftlab.checks import DataError
from ftlab.tasks.readers import SPLIT_PATHS, read_table, read_text

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


def load_source(cfg: dict[str, Any]) -> dict[str, Examples]:
    """Raw examples per available split, as given by the source (no cleaning yet)."""
    source = cfg["source"]
    if source == "folder":
        return {"train": read_folder(resolve_path(cfg["path"]), cfg.get("encoding_errors", "strict"))}
    if source == "files":
        out = {}
        for split, key in SPLIT_PATHS:
            if cfg.get(key):
                path = resolve_path(cfg[key])
                frame = read_table(path, cfg.get("encoding_errors", "strict"))
                out[split] = labelled_rows(frame, cfg["text_column"], cfg["label_column"], path)
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


def label_strings(labels) -> list[str]:
    """Labels as strings; whole numbers read as floats (a column with an empty cell) lose their ``.0``."""
    values = labels.tolist()
    if all(isinstance(v, float) and v.is_integer() for v in values):
        values = [int(v) for v in values]
    return [str(v) for v in values]


def labelled_rows(frame, text_column: str, label_column: str, path: str) -> Examples:
    """Texts and labels of a table; rows with an empty text or label are dropped with a warning (never a class
    called ``nan``), and a file left without any labelled row is a ``DataError``."""
    texts, labels = frame[text_column], frame[label_column]
    empty = texts.isna() | (texts.astype(str).str.strip() == "") | labels.isna() | (
        labels.astype(str).str.strip() == "")
    if empty.all():
        raise DataError(f"{path}: no row has both a text ({text_column}) and a label ({label_column})")
    if empty.any():
        lines = [i + 2 for i in frame.index[empty][:5]]  # +2: the header, and line numbers start at 1
        log.warning("%s: %d row(s) with an empty %s or %s dropped (lines %s%s)", path, int(empty.sum()),
                    text_column, label_column, ", ".join(map(str, lines)), ", ..." if empty.sum() > 5 else "")
    return texts[~empty].astype(str).tolist(), label_strings(labels[~empty])


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
    known = {str(label) for label in raw["train"][1]}
    for split, (_, labels) in held_out.items():
        unseen = sorted(set(labels) - known, key=label_sort_key)
        if unseen:
            raise DataError(f"data.{dict(SPLIT_PATHS)[split]}: label(s) {', '.join(map(repr, unseen))} never occur in "
                            f"the training data, so the model cannot learn them; valid: {', '.join(sorted(known))}")
    keys = {split: {" ".join(t.split()) for t in texts} for split, (texts, _) in held_out.items()}
    both = keys.get("validation", set()) & keys.get("test", set())
    if both:
        raise DataError(f"data.val_path and data.test_path share {len(both)} text(s) (e.g. {next(iter(both))[:60]!r}): "
                        "choosing the checkpoint on test texts biases the test score; make the files disjoint")
    held_keys = set().union(*keys.values())
    train_texts, train_labels = dedupe(*raw["train"], exclude=held_keys)
    leaked = len({" ".join(t.split()) for t in raw["train"][0]} & held_keys)
    if leaked and not train_texts:
        raise DataError("every training text also appears in data.val_path / data.test_path; the held-out files must "
                        "hold texts the model does not train on")
    if leaked:
        log.warning("%d training text(s) also in the validation / test files: removed from training", leaked)

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
