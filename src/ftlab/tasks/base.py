"""The ``Task`` interface: everything that differs between tasks, in one object per task.

The rest of ftlab (data module, LightningModule, strategies, sweeps, report, export, predict, model card) is one code
path that asks the job's task object. A task is its ``TaskSpec`` (``specs.py``: what it is and which settings it
accepts, read by the config's validation without loading any library) plus a ``Task`` subclass in a file of its own,
with one line in ``ftlab.tasks.specs.TASK_SPECS`` and one in ``ftlab.tasks.registry.TASKS``; the README's "Adding a
task" lists what it must provide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ftlab.tasks.readers import IGNORE_INDEX
from ftlab.tasks.specs import TaskSpec


class Task(TaskSpec):
    """A fine-tuning task: its spec (``specs.py``), and the data pipeline, metrics and predictions. Subclasses derive
    from their spec too and implement ``prepare`` and ``collator``; the other methods have defaults that suit a task
    without labels or extra details."""

    # -- data ----------------------------------------------------------------------------------------------
    def prepare(self, cfg: dict[str, Any], tokenizer, max_length: int, seed: int, work_dir: Path | None = None):
        """Tokenised ``datasets.DatasetDict`` (train / validation / test) and the label names (``[]`` if none).

        ``work_dir``: an empty folder on the cache's disk for intermediate files (deleted once the result is saved),
        where a task that streams its source writes it instead of holding it in memory."""
        raise NotImplementedError

    def collator(self, tokenizer):
        """Collate function that pads a batch to its longest row."""
        raise NotImplementedError

    # -- metrics -------------------------------------------------------------------------------------------
    def metrics(self, label_names: list[str], prefix: str):
        """``torchmetrics`` collection updated with (``metric_inputs(logits)``, labels), or None: the loss only."""
        return None

    def metric_inputs(self, logits: torch.Tensor) -> torch.Tensor:
        """What the metrics see of the logits: argmax predictions, or probabilities where curves need them."""
        return logits.argmax(dim=-1)

    def loss_weight(self, labels: torch.Tensor):
        """What a batch's mean loss averages over (examples or tokens), for exact epoch means."""
        return len(labels)

    def logits_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean loss the model's head computes from its logits (cross-entropy over the labelled positions), for
        a forward pass that returns logits only (an ONNX Runtime session)."""
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                                 ignore_index=IGNORE_INDEX)

    def derived_metrics(self, prefix: str, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Scalars computed from an epoch's metrics, e.g. perplexity from the loss."""
        return {}

    def test_details(self, metrics, values: dict[str, torch.Tensor], label_names: list[str]) -> dict[str, Any]:
        """Non-scalar test results for metrics.json and the card (confusion matrix, scores per entity type).

        May pop its non-scalar entries from ``values``; what remains is logged."""
        return {}

    # -- model card ----------------------------------------------------------------------------------------
    def card_labels(self, metrics: dict[str, Any]) -> str:
        """A card line naming the labels, or ''."""
        return ""

    def card_details(self, metrics: dict[str, Any]) -> str:
        """The card's breakdown of the test results, or ''."""
        return ""

    # -- prediction ----------------------------------------------------------------------------------------
    def predict(self, path: Path, texts: list[str], *, batch_size: int, max_length: int, max_new_tokens: int,
                progress: bool) -> Iterator[dict]:
        """One prediction per text, in input order, in batches of ``batch_size``."""
        from tqdm.auto import tqdm

        run = self.predictor(path, max_length=max_length, max_new_tokens=max_new_tokens)
        batches = range(0, len(texts), batch_size)
        # disable=None: tqdm draws only on a terminal, never escape codes into a file or a pipe
        for start in tqdm(batches, disable=None if progress else True, desc="predicting", unit="batch"):
            yield from run(texts[start:start + batch_size])

    def predictor(self, path: Path, *, max_length: int, max_new_tokens: int,
                  forward=None) -> Callable[[list[str]], list[dict]]:
        """Load the model once (no remote code); the returned function predicts one batch of texts. ``predict`` and
        the server (``ftlab.serving``) both use it, so their outputs are the same.

        ``forward``: what runs the model's forward pass instead of PyTorch (an ONNX Runtime session,
        ``ftlab.deploy.runners.OnnxModel``); tokenisation and reading the outputs stay the model's own. Here:
        ``transformers.pipeline``, one pipeline batch per call."""
        from transformers import pipeline

        pipe = pipeline(self.pipeline_tag, model=str(path), trust_remote_code=False, **self.pipeline_kwargs)
        # The pipelines truncate (where they do) at the tokenizer's model_max_length: make that max_length at most.
        pipe.tokenizer.model_max_length = min(pipe.tokenizer.model_max_length or max_length, max_length)
        if forward is not None:
            swap_forward(pipe.model, forward)
        kwargs = self.generation_kwargs(max_new_tokens)
        return lambda texts: [self.read_output(r) for r in pipe(list(texts), batch_size=len(texts), **kwargs)]

    def generation_kwargs(self, max_new_tokens: int) -> dict[str, Any]:
        """Extra arguments of the pipeline call."""
        return {}

    def read_output(self, result) -> dict:
        """One pipeline result as ftlab's JSON line."""
        raise NotImplementedError


def swap_forward(model, forward):
    """``model`` with its forward pass run by ``forward`` (an ONNX Runtime session, ``ftlab.deploy.runners.OnnxModel``);
    everything else (config, labels, the pipelines' pre- and post-processing) stays the model's own. Returns the
    model."""
    model.forward = forward  # an instance attribute: nn.Module.__call__ looks it up before the class's forward
    return model
