"""What fine-tuning forgets: held-out general text (``retention.source``, never the fine-tuning data) measured on the
untuned model right before training and on the weights the test metrics come from.

- ``causal_lm``: the perplexity of the passages (token-weighted, tokenised like the task's own documents: no BOS, one
  EOS each), before and after: ``retention/ppl_before``, ``ppl_after``, ``ppl_change`` (after / before - 1).
- encoders (classification, NER): how far the final layer's representations of the passages moved, as debiased linear
  CKA between the untuned and the tuned model's features mean-pooled over real tokens (``retention/cka``: 1 = the same
  up to rotation and scale, about 0 = unrelated) and the mean cosine of each passage's two feature vectors
  (``retention/cosine``).

A resumed job reads the untuned model's values from ``retention_before.pt`` (written by its first run), so it
reports what the uninterrupted job would.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from ftlab.probes.retention_source import BEFORE_FILE, read_passages, source_label
from ftlab.tasks.lm import PadCollator, document_ids
from ftlab.tasks.readers import IGNORE_INDEX

log = logging.getLogger(__name__)

def linear_cka(x: torch.Tensor, y: torch.Tensor, debiased: bool = True) -> float:
    """Linear CKA (Kornblith et al. 2019) of two feature matrices over the same n examples (n x d1, n x d2):
    ``HSIC(X, Y) / sqrt(HSIC(X, X) HSIC(Y, Y))`` with ``HSIC(X, Y) = ||Yc^T Xc||_F^2`` on column-centred features.
    1 when Y is X rotated and scaled (computed in float64, so unchanged features give 1 to ~1e-15).

    ``debiased`` (n >= 4): the unbiased HSIC estimator (Song et al. 2012), as in Kornblith et al.'s code. The plain
    estimate is high for unrelated features when n is not much larger than d (about 0.75 for independent random
    features at n=128, d=384); the debiased one is about 0 there.
    """
    x, y = x.double(), y.double()
    x, y = x - x.mean(0), y - y.mean(0)
    n = x.shape[0]

    def hsic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        plain = torch.linalg.norm(b.T @ a) ** 2
        if not debiased:
            return plain
        ra, rb = (a * a).sum(1), (b * b).sum(1)  # the Gram matrices' diagonals, which the estimator leaves out
        return plain - n / (n - 2) * (ra @ rb) + ra.sum() * rb.sum() / ((n - 1) * (n - 2))

    return (hsic(x, y) / torch.sqrt(hsic(x, x) * hsic(y, y))).item()


def lm_batches(tokenizer, texts: list[str], max_length: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """Each passage tokenised as the LM task tokenises a document (no BOS, EOS appended), cut to ``max_length``, and
    right-padded in batches of similar lengths (labels -100 on padding)."""
    # Sorted by length: far less padding to compute, and the token-weighted sum does not depend on the order.
    rows = sorted((document_ids(tokenizer, t)[:max_length] for t in texts), key=len)
    collate = PadCollator(tokenizer.pad_token_id)
    return [collate([{"input_ids": r, "attention_mask": [1] * len(r), "labels": r} for r in rows[i:i + batch_size]])
            for i in range(0, len(rows), batch_size)]


def encoder_batches(tokenizer, texts: list[str], max_length: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """The passages tokenised as the classifier tokenises its texts (with the special tokens), in padded batches of
    similar lengths (the same order before and after training, so the feature rows match)."""
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    texts = [texts[i] for i in sorted(range(len(texts)), key=lengths.__getitem__)]
    return [dict(tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                           return_tensors="pt")) for i in range(0, len(texts), batch_size)]


@torch.no_grad()
def lm_nll(model, batches, device) -> dict[str, float]:
    """Summed next-token negative log-likelihood over every real token after a passage's first, and their count."""
    total, count = 0.0, 0
    for batch in batches:
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        targets = batch["labels"][:, 1:].to(device)
        nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                              reduction="none")
        total += nll.double().sum().item()
        count += int((targets != IGNORE_INDEX).sum())
    return {"nll": total, "tokens": count}


@torch.no_grad()
def pooled_features(model, batches, device) -> torch.Tensor:
    """The final hidden layer mean-pooled over each passage's real tokens (n x hidden, float64, on the CPU)."""
    out = []
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        hidden = model(**batch, output_hidden_states=True).hidden_states[-1].double()
        mask = batch["attention_mask"].unsqueeze(-1).double()
        out.append(((hidden * mask).sum(1) / mask.sum(1)).cpu())
    return torch.cat(out)


class RetentionProbe(L.Callback):
    """Measures the passages on the untuned model when training starts and on the tested weights after training.

    Runs on every rank (a sharded model needs them all; the passages are few); only rank 0 writes. Inside Lightning's
    hooks the model is on its device, wrapped as the strategy wants, with the best checkpoint loaded for the test.
    """

    def __init__(self, source: str, texts: list[str], batches: list[dict[str, torch.Tensor]], causal: bool,
                 before_path: Path):
        self.label, self.samples, self.batches, self.causal = source_label(source), len(texts), batches, causal
        self.before_path = Path(before_path)
        self.before: dict[str, Any] | None = None
        self.after: dict[str, Any] | None = None
        self.fitted = False

    def measure(self, pl_module) -> dict[str, Any]:
        """The passages' NLL (LM) or pooled features (encoder), in eval mode; each module's mode is restored after."""
        modes = {m: m.training for m in pl_module.modules()}
        pl_module.eval()
        try:
            if self.causal:
                return lm_nll(pl_module.model, self.batches, pl_module.device)
            return {"features": pooled_features(pl_module.model, self.batches, pl_module.device)}
        finally:
            for m, mode in modes.items():
                m.train(mode)

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.ckpt_path is not None:  # resumed: the weights are trained ones; the first run saved the untuned
            if self.before_path.exists():
                self.before = torch.load(self.before_path, weights_only=True)
            else:
                log.warning("retention: %s is missing; this resumed job reports no before-values", self.before_path)
            return
        self.before = self.measure(pl_module)
        if trainer.is_global_zero:
            torch.save(self.before, self.before_path)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.fitted = True

    def on_test_end(self, trainer, pl_module) -> None:
        if self.fitted:  # the test after training (not eval_before's test of the untuned model)
            self.after = self.measure(pl_module)

    def metrics(self) -> dict[str, Any]:
        """``retention/*`` of the job (before-values and changes only where the before-values exist)."""
        out: dict[str, Any] = {"retention/source": self.label, "retention/samples": self.samples}
        if self.after is None:
            return out
        if self.causal:
            out["retention/tokens"] = self.after["tokens"]
            out["retention/ppl_after"] = math.exp(self.after["nll"] / self.after["tokens"])
            if self.before is not None:
                out["retention/ppl_before"] = math.exp(self.before["nll"] / self.before["tokens"])
                out["retention/ppl_change"] = out["retention/ppl_after"] / out["retention/ppl_before"] - 1
        elif self.before is not None:
            x, y = self.before["features"], self.after["features"]
            out["retention/cka"] = linear_cka(x, y)
            out["retention/cosine"] = F.cosine_similarity(x, y, dim=1).mean().item()
        return out


def describe(metrics: dict[str, Any]) -> str:
    """One line for the console: the source, then perplexity before -> after (change), or CKA and cosine to the
    untuned encoder's representations."""
    head = f"retention ({metrics['retention/source']}, {metrics['retention/samples']} passages): "
    if "retention/ppl_change" in metrics:
        return head + (f"perplexity {metrics['retention/ppl_before']:.2f} -> {metrics['retention/ppl_after']:.2f} "
                       f"({100 * metrics['retention/ppl_change']:+.1f}%)")
    if "retention/cka" in metrics:
        return head + (f"representations vs the untuned encoder: CKA {metrics['retention/cka']:.4f} (debiased linear), "
                       f"mean cosine {metrics['retention/cosine']:.4f}")
    return head + "no before-values; " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))


def retention_callbacks(cfg, datamodule) -> list[RetentionProbe]:
    """A ``RetentionProbe`` for the job when ``retention.source`` is set (else none), with the passages batched by
    ``eval_batch_size`` and cut to ``max_length``."""
    spec = cfg.get("retention") or {}
    if not spec.get("source"):
        return []
    texts = read_passages(spec["source"], spec.get("text_field", "text"), spec.get("max_samples"))
    causal = datamodule.task.name == "causal_lm"
    batches = (lm_batches if causal else encoder_batches)(datamodule.tokenizer, texts, datamodule.max_length,
                                                          datamodule.eval_batch_size)
    return [RetentionProbe(spec["source"], texts, batches, causal, Path(cfg.output_dir) / BEFORE_FILE)]


def retention_metrics(callbacks) -> dict[str, Any]:
    """The ``retention/*`` metrics of the job's probe, if it has one."""
    return next((c.metrics() for c in callbacks if isinstance(c, RetentionProbe)), {})
