"""The inference process: the model loaded once, batches of requests answered with ``ftlab.predict``'s outputs.

The prediction code is the task's own (``Task.predictor``, which ``ftlab.predict`` uses too); the ONNX backends
only replace the model's forward pass with an ONNX Runtime session (``ftlab.deploy.runners``). Loading is as safe as
everywhere in ftlab: safetensors weights only, no remote code. A causal LM is served by PyTorch only: generating
through ONNX Runtime needs a decoding loop over the exported past key values that ftlab does not implement.
"""

from __future__ import annotations

import time
from pathlib import Path

import litserve as ls

from ftlab.serving.limits import BadRequest, Limits, request_texts
from ftlab.serving.loop import WaitingBatchedLoop


def load_predictor(model_dir: Path, onnx_file: Path | None, max_length: int, max_new_tokens: int):
    """The task's batch predictor for the exported model in ``model_dir``, its forward pass run by ONNX Runtime on
    ``onnx_file`` when given."""
    # Local: this module is imported by the server before it forks the inference process, which alone needs torch.
    from ftlab.deploy.predict import model_task
    from ftlab.deploy.runners import OnnxModel
    from ftlab.tasks.registry import get_task

    # Threads that spin between batches starve the HTTP process on a small machine (server.py has the numbers).
    forward = OnnxModel(onnx_file, spinning=False) if onnx_file is not None else None
    return get_task(model_task(model_dir)).predictor(model_dir, max_length=max_length, max_new_tokens=max_new_tokens,
                                                     forward=forward)


class PredictAPI(ls.LitAPI):
    """LitServe's API for ``POST /predict``: ``{"text"}`` -> one ``ftlab.predict`` row, ``{"texts"}`` ->
    ``{"predictions": [rows]}``; concurrent requests are merged into one model batch (``max_batch_size`` requests,
    waiting at most ``batch_timeout`` seconds after the first), run in forward passes of at most ``max(max_texts,
    max_batch_size)`` texts (memory stays bounded when many long requests meet)."""

    def __init__(self, model_dir: Path, onnx_file: Path | None, identity: dict[str, str], limits: Limits,
                 max_length: int, max_new_tokens: int, max_batch_size: int, batch_timeout: float):
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, loop=WaitingBatchedLoop())
        self.model_dir, self.onnx_file, self.identity, self.limits = model_dir, onnx_file, identity, limits
        self.max_length, self.max_new_tokens = max_length, max_new_tokens
        self.run = None

    def setup(self, device) -> None:
        from transformers.utils import logging as hf_logging

        from ftlab.serving import metrics

        # No progress bars in a server's log; tqdm's lock would also leave a semaphore behind when LitServe
        # terminates this process.
        hf_logging.disable_progress_bar()
        start = time.perf_counter()
        self.run = load_predictor(self.model_dir, self.onnx_file, self.max_length, self.max_new_tokens)
        metrics.MODEL_LOAD.labels(**self.identity).set(time.perf_counter() - start)
        self.run(["warm-up"])  # the first forward pass allocates; no request should pay for it

    def decode_request(self, request, **kwargs) -> tuple[list[str], bool]:
        from fastapi import HTTPException

        # Checked by the HTTP process already (gate.py); a request sent around it is checked here, as the loop takes
        # it (loop.py), and refused alone rather than failing the batch it would have joined.
        try:
            return request_texts(request, self.limits)
        except BadRequest as err:
            raise HTTPException(err.status, err.reason) from None

    def predict(self, inputs: list[tuple[list[str], bool]], **kwargs) -> list[dict]:
        from ftlab.serving import metrics

        texts = [text for request, _ in inputs for text in request]
        preds, size = [], max(self.limits.max_texts, self.max_batch_size)
        for start in range(0, len(texts), size):
            chunk = texts[start:start + size]
            began = time.perf_counter()
            preds += self.run(chunk)
            metrics.BATCH_SECONDS.labels(**self.identity).observe(time.perf_counter() - began)
            metrics.BATCH_TEXTS.labels(**self.identity).observe(len(chunk))
        metrics.BATCH_REQUESTS.labels(**self.identity).observe(len(inputs))
        out, i = [], 0
        for request, single in inputs:
            rows = [{"text": text, **pred} for text, pred in zip(request, preds[i:i + len(request)])]
            i += len(request)
            out.append(rows[0] if single else {"predictions": rows})
        return out
