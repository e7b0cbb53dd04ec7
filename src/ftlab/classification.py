"""Text classification: sources (label folders, tables, hub datasets), deduplicated stratified splits, metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from ftlab.assets import resolve_path
from ftlab.data import SPLIT_PATHS, read_table, sample_limit

Examples = tuple[list[str], list[Any]]  # (texts, raw labels)


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
        for split, key in SPLIT_PATHS:
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


def prepare(cfg: dict[str, Any], tokenizer, max_length: int, seed: int):
    """Tokenised ``DatasetDict`` (train / validation / test, labels as class ids) and the sorted label names."""
    import datasets

    splits, names = clean_and_split(load_source(cfg), cfg["val_size"], cfg["test_size"], seed)
    features = datasets.Features({"text": datasets.Value("string"), "labels": datasets.ClassLabel(names=names)})
    index = {name: i for i, name in enumerate(names)}
    built = {}
    for split, (texts, labels) in splits.items():
        n = sample_limit(cfg, split) or len(texts)
        built[split] = datasets.Dataset.from_dict(
            {"text": texts[:n], "labels": [index[label] for label in labels[:n]]}, features=features)

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(batch["text"], truncation=True, max_length=max_length)

    return datasets.DatasetDict(built).map(tokenize, batched=True, remove_columns=["text"], desc="tokenizing"), names


def metrics(label_names: list[str], prefix: str) -> MetricCollection:
    """Accuracy (micro) and macro F1 / precision / recall under ``<prefix>/<name>``."""
    num_classes = len(label_names)
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
        },
        prefix=f"{prefix}/",
    )


def collator(tokenizer):
    """Dynamic padding to the longest text of the batch."""
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer)


def loss_weight(labels: torch.Tensor) -> int:
    """Examples in a batch: what the classification loss averages over."""
    return len(labels)
