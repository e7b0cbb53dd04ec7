"""Text classification: sources (label folders, tables, hub datasets), deduplicated stratified splits, metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from ftlab.assets import resolve_path
from ftlab.checks import Checker, DataError
from ftlab.tasks.base import Task
from ftlab.tasks.readers import SPLIT_PATHS, TABULAR_SUFFIXES, check_columns, read_table, read_text, sample_limit

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


def label_count(c: Checker) -> int | None:
    """Check that the data files exist and have the configured columns; return the number of classes."""
    source = c.get("data.source")
    if source == "hub":
        return None  # needs the network; checked when loading
    if c.get("data.path") is None:
        c.fail("data.path", "required: the training data file or folder")
        return None
    path = resolve_path(str(c.get("data.path")))
    if not Path(path).exists():
        c.fail("data.path", f"no such file or directory: {path}")
        return None
    if source == "folder":
        return len([p for p in Path(path).iterdir() if p.is_dir() and any(p.iterdir())])
    classes: set = set()
    for key in (f"data.{name}" for _, name in SPLIT_PATHS):
        value = c.get(key)
        if value is None:
            continue
        file = resolve_path(str(value))
        if not Path(file).is_file():
            c.fail(key, f"no such file: {file}")
            continue
        if Path(file).suffix.lower() not in TABULAR_SUFFIXES:
            c.fail(key, f"unsupported file type; valid suffixes: {', '.join(TABULAR_SUFFIXES)}")
            continue
        try:
            frame = read_table(file, c.get("data.encoding_errors") or "strict")
        except DataError as err:
            c.problems.append(f"{key}: {err}")
            continue
        check_columns(c, frame, file, ("data.text_column", "data.label_column"))
        if c.get("data.label_column") in frame.columns:
            classes |= set(label_strings(frame[c.get("data.label_column")].dropna()))
    return len(classes) if classes else None


def _confusion_table(confusion: dict[str, Any]) -> str:
    labels = confusion["labels"]
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(str(v) for v in row) + " |"
              for label, row in zip(labels, confusion["matrix"])]
    return "\n".join(lines)


class TextClassification(Task):
    """One label per text: sequence classification head, accuracy and macro F1 / precision / recall."""

    name = "text_classification"
    auto_class = "AutoModelForSequenceClassification"
    pipeline_tag = "text-classification"
    monitors = ("val/acc", "val/f1", "val/precision", "val/recall", "val/loss")
    has_labels = True
    sources = ("folder", "files", "hub")
    data_options = ("text_column", "label_column", "name", "config_name", "train_split", "val_split", "test_split")
    split_description = "deduplicated, seeded stratified split"

    def check_data(self, c: Checker) -> None:
        n_classes = label_count(c)
        if n_classes is not None and n_classes < 2:
            c.fail("data.label_column", f"found {n_classes} class(es); classification needs at least 2")

    def prepare(self, cfg: dict[str, Any], tokenizer, max_length: int, seed: int):
        """Labels become class ids of the sorted label names."""
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

        dsd = datasets.DatasetDict(built).map(tokenize, batched=True, remove_columns=["text"], desc="tokenizing")
        return dsd, names

    def collator(self, tokenizer):
        """Dynamic padding to the longest text of the batch."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def metrics(self, label_names: list[str], prefix: str) -> MetricCollection:
        """Accuracy (micro) and macro F1 / precision / recall under ``<prefix>/<name>``; the test confusion matrix."""
        num_classes = len(label_names)
        metrics = {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
        }
        if prefix == "test":
            metrics["confusion"] = MulticlassConfusionMatrix(num_classes)
        return MetricCollection(metrics, prefix=f"{prefix}/")

    def test_details(self, metrics, values, label_names):
        matrix = values.pop("test/confusion")
        return {"confusion_matrix": {"labels": list(label_names), "matrix": matrix.tolist()}}

    def card_labels(self, metrics: dict[str, Any]) -> str:
        return f"- **Labels:** {', '.join(metrics['test/confusion_matrix']['labels'])}\n"

    def card_details(self, metrics: dict[str, Any]) -> str:
        return "Test confusion matrix:\n\n" + _confusion_table(metrics["test/confusion_matrix"])

    def predict(self, path, texts, *, batch_size, max_length, max_new_tokens, progress):
        """``{"label", "score", "probs"}`` per text, label names from the model's config."""
        import torch
        from tqdm.auto import tqdm
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=False).eval()
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        with torch.inference_mode():
            for start in tqdm(range(0, len(texts), batch_size), disable=not progress, desc="predicting",
                              unit="batch"):
                batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                  max_length=max_length, return_tensors="pt")
                probs = model(**batch).logits.softmax(-1)
                for row in probs.tolist():
                    best = max(range(len(row)), key=row.__getitem__)
                    yield {"label": names[best], "score": row[best], "probs": dict(zip(names, row))}
