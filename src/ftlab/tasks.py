"""The tasks ftlab fine-tunes for, and what differs between them: model class, metrics, pipeline, monitors.

Everything else (strategies, training loop, sweeps, reports, export) is one code path for all tasks. Each task's
module (``classification``, ``ner``, ``lm``) provides the same functions: ``prepare`` (tokenised splits and label
names), ``collator``, ``metrics`` and ``loss_weight``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """What a task needs from ``transformers`` and which validation metrics it can be selected on."""

    name: str
    auto_class: str  # transformers Auto class that adds the task's head
    pipeline_tag: str  # what ``transformers.pipeline`` loads the exported model as
    monitors: tuple[str, ...]  # valid values of the top-level ``monitor`` key
    has_labels: bool  # label names come from the data (classes, BIO tags)
    module: str  # the ftlab module with the task's data and metric pieces
    pipeline_kwargs: tuple[tuple[str, str], ...] = ()  # how the pipeline reads the model's outputs back

    @property
    def architecture_suffix(self) -> str:
        """What a saved model's architecture name ends with, e.g. ``ForTokenClassification``."""
        return self.auto_class.removeprefix("AutoModel")


TASKS = {
    task.name: task
    for task in (
        Task("text_classification", "AutoModelForSequenceClassification", "text-classification",
             ("val/acc", "val/f1", "val/precision", "val/recall", "val/loss"), has_labels=True,
             module="ftlab.classification"),
        Task("token_classification", "AutoModelForTokenClassification", "token-classification",
             ("val/f1", "val/precision", "val/recall", "val/acc", "val/loss"), has_labels=True, module="ftlab.ner",
             # Labels sit on each word's first sub-token (ner.align_labels), so entities are read the same way.
             pipeline_kwargs=(("aggregation_strategy", "first"),)),
        Task("causal_lm", "AutoModelForCausalLM", "text-generation", ("val/loss", "val/ppl"), has_labels=False,
             module="ftlab.lm"),
    )
}


def get_task(name: str) -> Task:
    """The task called ``name``; a clear error listing the valid names otherwise."""
    if name not in TASKS:
        raise ValueError(f"task={name!r}; valid choices: {', '.join(TASKS)}")
    return TASKS[name]


def auto_model_class(name: str):
    """The ``transformers`` Auto class for a task, e.g. ``AutoModelForTokenClassification``."""
    import transformers

    return getattr(transformers, get_task(name).auto_class)


def task_module(name: str):
    """The module with the task's ``prepare``, ``collator``, ``metrics`` and ``loss_weight`` (imported on use)."""
    import importlib

    return importlib.import_module(get_task(name).module)
