"""Each task's spec (what validation reads without any library) and its Task object are one task."""

from __future__ import annotations

from ftlab.tasks.registry import TASKS
from ftlab.tasks.specs import TASK_SPECS


def test_every_task_is_its_spec_with_the_pipeline_on_top():
    assert list(TASKS) == list(TASK_SPECS)  # the same tasks, the valid choices in the same order
    for name, task in TASKS.items():
        spec = TASK_SPECS[name]
        assert isinstance(task, type(spec)) and task.name == spec.name == name
        assert (task.monitors, task.sources, task.data_options) == (spec.monitors, spec.sources, spec.data_options)
