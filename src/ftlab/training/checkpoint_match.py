"""Whether a checkpoint's weights are this job's: a ``last.ckpt`` copied from another job (another strategy, model
or head) would otherwise fail inside ``load_state_dict`` with a page of tensor names, or, were loading lenient,
train on from weights that are not the ones the job saved."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ADVICE = "resume a job from its own checkpoints/last.ckpt (a checkpoint of another job cannot continue this one)"


def checkpoint_mismatch(model: Mapping[str, Any], saved: Mapping[str, Any], job_strategy: str | None = None,
                        saved_strategy: str | None = None) -> str | None:
    """What differs between the tensors a module has (``model``: its ``state_dict()``) and those a checkpoint
    holds (``saved``), in one line, or None when every name and shape matches. The strategies, when both are known
    and differ, are named first: the usual reason."""
    missing = [name for name in model if name not in saved]
    unknown = [name for name in saved if name not in model]
    reshaped = [name for name in model if name in saved and tuple(saved[name].shape) != tuple(model[name].shape)]
    if not (missing or unknown or reshaped):
        return None
    parts = []
    if job_strategy and saved_strategy and job_strategy != saved_strategy:
        parts.append(f"saved by a strategy={saved_strategy} job, and this job is strategy={job_strategy}")
    if missing:
        parts.append(f"{len(missing)} of the model's tensors are not in it (e.g. {missing[0]!r})")
    if unknown:
        parts.append(f"{len(unknown)} of its tensors are not in the model (e.g. {unknown[0]!r})")
    if reshaped:
        name = reshaped[0]
        parts.append(f"{len(reshaped)} tensor(s) have another shape (e.g. {name!r}: {list(saved[name].shape)} in it, "
                     f"{list(model[name].shape)} in the model)")
    return "not a checkpoint of this job's model: " + "; ".join(parts)
