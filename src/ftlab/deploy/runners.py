"""An exported ONNX graph run by ONNX Runtime, called like the ``transformers`` model it came from.

``OnnxModel(path)(**tokenizer_output)`` returns an output with ``.logits`` (and ``["logits"]``), so the code that
turns a model's logits into predictions and metrics (``ftlab.tasks``, the pipelines) runs unchanged on ONNX Runtime:
the serving backends and the fp32 / int8 comparison swap the model's ``forward`` for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers.utils import ModelOutput

from ftlab.core.extras import require_extras
from ftlab.deploy.onnx_graphs import LM_INPUTS, position_ids


def require_onnx():
    """The ``onnxruntime`` module, after checking that the exporter's modules (``onnx``, ``onnxscript``, imported
    lazily by torch) are installed too."""
    require_extras("ONNX export", "onnx")
    # Local: onnxruntime is the optional onnx extra.
    import onnxruntime

    return onnxruntime


@dataclass
class OnnxOutput(ModelOutput):
    """What the pipelines and ftlab read of a model's output."""

    logits: torch.Tensor | None = None


class OnnxModel:
    """An ONNX Runtime session on the CPU, fed the tokenizer's tensors by name.

    A causal-LM graph (inputs ``position_ids`` and ``past.*``) is run as one prefill step: positions from the
    attention mask, an empty past; ``step`` runs it with a given past (for generation and the parity check).
    """

    def __init__(self, path: str | Path, threads: int | None = None, spinning: bool = True):
        ort = require_onnx()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if not spinning:  # idle threads sleep instead of spinning: what a server sharing its cores needs
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.past = [i for i in self.session.get_inputs() if i.name.startswith("past.")]
        self.is_lm = bool(self.past) and all(n in self.inputs for n in LM_INPUTS)

    def step(self, input_ids, attention_mask, past: list[np.ndarray] | None = None) -> tuple[np.ndarray, list]:
        """One causal-LM step: logits and the present key/values (feed them as the next step's ``past``)."""
        batch = input_ids.shape[0]
        if past is None:  # heads and head size from the graph's own input shapes
            past = [np.zeros((batch, p.shape[1], 0, p.shape[3]), dtype=np.float32) for p in self.past]
        mask = torch.as_tensor(attention_mask)
        feeds = {"input_ids": _numpy(input_ids), "attention_mask": _numpy(mask),
                 "position_ids": _numpy(position_ids(mask, past[0].shape[2])),
                 **{p.name: value for p, value in zip(self.past, past)}}
        logits, *present = self.session.run(None, feeds)
        return logits, present

    def __call__(self, input_ids=None, attention_mask=None, **inputs) -> OnnxOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(torch.as_tensor(input_ids))
        if self.is_lm:
            return OnnxOutput(logits=torch.from_numpy(self.step(input_ids, attention_mask)[0]))
        given = {"input_ids": input_ids, "attention_mask": attention_mask, **inputs}
        feeds = {name: _numpy(given[name]) for name in self.inputs}
        return OnnxOutput(logits=torch.from_numpy(self.session.run(["logits"], feeds)[0]))


def _numpy(value) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return array.astype(np.int64, copy=False)

