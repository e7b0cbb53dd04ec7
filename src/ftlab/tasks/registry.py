"""The one list of the tasks' ``Task`` objects (data pipeline, metrics, predictions); their specs, which validation
reads without loading torchmetrics or transformers, are ``ftlab.tasks.specs.TASK_SPECS``, in the same order."""

from __future__ import annotations

from ftlab.tasks.base import Task
from ftlab.tasks.classification import TextClassification
from ftlab.tasks.lm import CausalLM
from ftlab.tasks.ner import TokenClassification

TASKS: dict[str, Task] = {task.name: task for task in (TextClassification(), TokenClassification(), CausalLM())}


def get_task(name: str) -> Task:
    """The task called ``name``; a clear error listing the valid names otherwise."""
    if name not in TASKS:
        raise ValueError(f"task={name!r}; valid choices: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "Task", "get_task"]
