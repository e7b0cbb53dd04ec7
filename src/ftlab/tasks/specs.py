"""What each task is and which settings it accepts, known without loading any library: the ``TaskSpec`` of every task
(its head, metrics to monitor, data sources and options, and the checks of ``data.*``).

The config's validation reads these before anything heavy loads; each ``Task`` (``base.py``, one file per task) is its
spec plus the data pipeline, metrics and predictions, which need PyTorch, torchmetrics and transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftlab.core.assets import resolve_path
from ftlab.core.checks import Checker, DataError
from ftlab.tasks.labelled_texts import class_folders, typed_labels
from ftlab.tasks.readers import SPLIT_PATHS, check_columns, check_files
from ftlab.tasks.tables import TABULAR_SUFFIXES, scan_table

LABEL_CASES = ("refuse", "distinct")  # data.label_case: labels differing only in case are an error, or two classes
LM_FORMATS = ("text", "prompt_response")  # data.format of a causal LM
TEXT_SUFFIXES = (".txt", ".md", ".text")  # files a causal LM (and the retention probe) reads as one document each


class TaskSpec:
    """A task as settings see it. Subclasses set the class attributes and implement ``check_data``."""

    name: str
    auto_class: str  # transformers Auto class that adds the task's head, e.g. AutoModelForTokenClassification
    pipeline_tag: str  # what ``transformers.pipeline`` loads the exported model as
    pipeline_kwargs: dict[str, Any] = {}  # how the pipeline reads the model's outputs back
    monitors: tuple[str, ...]  # valid values of the top-level ``monitor`` key
    has_labels: bool  # label names come from the data (classes, BIO tags)
    sources: tuple[str, ...]  # valid values of ``data.source``
    data_options: tuple[str, ...] = ()  # the task's keys under ``data.`` beyond readers.COMMON_DATA_OPTIONS
    split_description: str  # how the splits were made, for the model card
    tokenizer_kwargs: dict[str, Any] = {}  # extra arguments for AutoTokenizer.from_pretrained

    @property
    def architecture_suffix(self) -> str:
        """What a saved model's architecture name ends with, e.g. ``ForTokenClassification``."""
        return self.auto_class.removeprefix("AutoModel")

    def model_class(self):
        """The ``transformers`` Auto class, e.g. ``AutoModelForTokenClassification``."""
        import transformers  # seconds to import: only where a model is built, never for checking settings

        return getattr(transformers, self.auto_class)

    def check_data(self, c: Checker) -> None:
        """Record problems with ``data.*`` (source, files, columns) that show before anything heavy loads."""
        raise NotImplementedError


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
    distinct_case = c.get("data.label_case") == "distinct"
    if source == "folder":
        try:
            return len(class_folders(path, distinct_case))
        except DataError as err:
            c.problems.append(f"data.path: {err}")
            return None
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
            columns, labels = scan_table(file, c.get("data.encoding_errors") or "strict", c.get("data.label_column"),
                                         c.get("data.cache_dir"),
                                         reads=(c.get("data.text_column"), c.get("data.label_column")))
            # As training reads them: 1 and 1.0 are one class.
            classes |= set(typed_labels(set(labels), file, distinct_case=distinct_case).values())
        except DataError as err:
            c.problems.append(f"{key}: {err}")
            continue
        check_columns(c, columns, file, ("data.text_column", "data.label_column"))
    return len(classes) if classes else None


class TextClassificationSpec(TaskSpec):
    """One label per text: sequence classification head, accuracy and macro F1 / precision / recall."""

    name = "text_classification"
    auto_class = "AutoModelForSequenceClassification"
    pipeline_tag = "text-classification"
    monitors = ("val/acc", "val/f1", "val/precision", "val/recall", "val/loss")
    has_labels = True
    sources = ("folder", "files", "hub")
    data_options = ("text_column", "label_column", "name", "config_name", "train_split", "val_split", "test_split",
                    "label_case")
    split_description = "deduplicated, seeded stratified split"

    def check_data(self, c: Checker) -> None:
        if c.get("data.label_case") is not None:
            c.choice("data.label_case", LABEL_CASES)
        n_classes = label_count(c)
        if n_classes is not None and n_classes < 2:
            c.fail("data.label_column", f"found {n_classes} class(es); classification needs at least 2")


class TokenClassificationSpec(TaskSpec):
    """NER: a BIO tag per word, token classification head, entity-level precision / recall / F1."""

    name = "token_classification"
    auto_class = "AutoModelForTokenClassification"
    pipeline_tag = "token-classification"
    # Labels sit on each word's first sub-token (align_labels), so entities are read the same way.
    pipeline_kwargs = {"aggregation_strategy": "first"}
    monitors = ("val/f1", "val/precision", "val/recall", "val/acc", "val/loss")
    has_labels = True
    sources = ("conll", "files")
    data_options = ("tokens_column", "tags_column")
    split_description = "sentences, deduplicated, seeded split"
    # Byte-level BPE tokenizers (RoBERTa, GPT-2) encode a word differently at the start of a text; pre-split words
    # need the leading space added, or ``is_split_into_words`` refuses them.
    tokenizer_kwargs = {"add_prefix_space": True}

    def check_data(self, c: Checker) -> None:
        check_files(c, ("data.tokens_column", "data.tags_column"))


class CausalLMSpec(TaskSpec):
    """Next-token prediction: token-weighted loss and perplexity; the exported model generates text."""

    name = "causal_lm"
    auto_class = "AutoModelForCausalLM"
    pipeline_tag = "text-generation"
    monitors = ("val/loss", "val/ppl")
    has_labels = False
    sources = ("folder", "files")
    data_options = ("format", "text_column", "prompt_column", "response_column", "packing")
    split_description = "whole documents split (seeded) before packing; sizes in max_length blocks"

    def check_data(self, c: Checker) -> None:
        if c.get("data.format") is not None:
            c.choice("data.format", LM_FORMATS)
        prompt_response = c.get("data.format") == "prompt_response"
        check_files(c, ("data.prompt_column", "data.response_column") if prompt_response else ("data.text_column",))


# Every task, by name, in the order the valid choices are listed; ``ftlab.tasks.registry.TASKS`` holds the same tasks.
TASK_SPECS: dict[str, TaskSpec] = {spec.name: spec for spec in (TextClassificationSpec(), TokenClassificationSpec(),
                                                                CausalLMSpec())}
