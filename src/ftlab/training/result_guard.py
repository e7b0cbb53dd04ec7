"""What a finished fit must show before its weights are exported as the job's result: it trained, and its weights are
numbers. A job that trained nothing (a limit or a budget that left no step) would otherwise export the untouched
checkpoint, and one whose learning rate diverged late (after the loss guard's last look) NaN weights, each with
exit status 0 and a plausible metrics.json."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ftlab.core.checks import FtlabError


def check_steps(global_step: int) -> None:
    """Refuse a fit that made no optimizer step."""
    if global_step == 0:
        raise FtlabError("the fit made 0 optimizer steps, so there is no fine-tuned model to test or export; check "
                           "trainer.max_steps, trainer.limit_train_batches, trainer.max_time and the training split")


def check_finite(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Refuse weights holding NaN or infinity (``FloatingPointError``, as the training-loss guard does)."""
    bad = [name for name, tensor in named_tensors
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor.detach()).all())]
    if bad:
        raise FloatingPointError(f"{len(bad)} weight tensor(s) to export are not finite ({bad[0]}"
                                 f"{', ...' if len(bad) > 1 else ''}): training diverged; nothing was exported, "
                                 "lower lr")
