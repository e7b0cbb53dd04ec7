"""What each task exports to ONNX: the module traced, its named inputs and outputs, and its dynamic axes.

Encoders (text and token classification) export one graph ``(input_ids, attention_mask[, token_type_ids]) ->
logits``. A causal LM exports the graph a generation loop needs: ``(input_ids, attention_mask, position_ids,
past.<layer>.key, past.<layer>.value, ...) -> (logits, present.<layer>.key, present.<layer>.value, ...)``; the first
step feeds a past of length 0, each later step the ``present`` tensors the previous one returned (the layout of
Hugging Face Optimum's ``with_past`` decoders).
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import numpy as np
import torch

ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
LM_INPUTS = ("input_ids", "attention_mask", "position_ids")


class UnsupportedModel(RuntimeError):
    """Raised when a model's architecture does not export with the graph its task needs (the reason says why)."""


def encoder_input_names(tokenizer) -> list[str]:
    """The tokenizer's outputs that the encoder graph takes, in the tokenizer's order."""
    return [n for n in tokenizer.model_input_names if n in ENCODER_INPUTS]


class EncoderLogits(torch.nn.Module):
    """Positional inputs (ONNX has no keyword arguments) -> the model's logits."""

    def __init__(self, model, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs):
        return self.model(**dict(zip(self.names, inputs))).logits


def cache_layout(model) -> list[tuple[int, int]]:
    """``(key/value heads, head size)`` of each layer's cache, read from one real forward pass (so any architecture
    whose cache is a plain ``DynamicCache`` of per-layer keys and values works without per-model code)."""
    with torch.inference_mode():
        out = model(input_ids=torch.zeros(1, 2, dtype=torch.long), use_cache=True)
    layers = getattr(out.cache, "layers", None)
    if not layers or not all(hasattr(layer, "keys") and getattr(layer, "keys", None) is not None for layer in layers):
        raise UnsupportedModel(f"{type(model).__name__}: its cache ({type(out.cache).__name__}) is not a "
                               "list of per-layer key/value tensors, so it cannot be fed back as ONNX inputs")
    return [(layer.keys.shape[1], layer.keys.shape[3]) for layer in layers]


def past_names(layers: int, prefix: str = "past") -> list[str]:
    return [f"{prefix}.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


class CausalLMWithPast(torch.nn.Module):
    """``(input_ids, attention_mask, position_ids, *past) -> (logits, *present)`` with the past as flat tensors."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, *past):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for layer in range(len(past) // 2):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                         use_cache=True)
        present = [t for layer in out.cache.layers for t in (layer.keys, layer.values)]
        return (out.logits, *present)


def position_ids(attention_mask: torch.Tensor, past_length: int = 0) -> torch.Tensor:
    """Positions counted over the real tokens only, as ``generate`` computes them (padding gets position 1)."""
    positions = attention_mask.long().cumsum(-1) - 1
    positions = positions.masked_fill(attention_mask == 0, 1)
    return positions[:, past_length:]


def empty_past(layout: list[tuple[int, int]], batch: int) -> list[np.ndarray]:
    """A past of length 0 for every layer (the first step of a generation)."""
    return [np.zeros((batch, heads, 0, size), dtype=np.float32) for heads, size in layout for _ in ("key", "value")]


@contextlib.contextmanager
def quiet_exporter():
    """torch.onnx's progress lines, its registry's "torchvision is not installed" warnings and the FutureWarnings and
    UserWarnings raised inside torch.export are for torch's developers; errors still propagate."""
    exporter = logging.getLogger("torch.onnx")
    level = exporter.level
    exporter.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        exporter.setLevel(level)


def export_graph(task: str, model, tokenizer, texts: list[str], path: str) -> dict:
    """Export ``model`` (a ``task`` model) to ``path`` with dynamic batch and sequence (and past) axes, traced on the
    first two of ``texts``; returns the graph's input and output names."""
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    example = tokenizer(texts[:2], padding=True, truncation=True, return_tensors="pt")
    if task != "causal_lm":
        names = encoder_input_names(tokenizer)
        torch.onnx.export(EncoderLogits(model, names).eval(), tuple(example[n] for n in names), path, input_names=names,
                          output_names=["logits"], dynamic_shapes=(tuple({0: batch, 1: seq} for _ in names),),
                          dynamo=True, verbose=False)
        return {"inputs": names, "outputs": ["logits"]}
    layout = cache_layout(model)
    ids, mask = example["input_ids"], example["attention_mask"]
    if ids.shape[1] < 2:  # torch.export specialises axes of size 0 and 1: trace on at least two tokens
        ids, mask = ids.repeat(1, 2), mask.repeat(1, 2)
    past_len = 3  # traced with a non-empty past; the axis is dynamic, so a past of length 0 runs too
    past = [torch.zeros(ids.shape[0], heads, past_len, size) for heads, size in layout for _ in ("key", "value")]
    full_mask = torch.cat([torch.ones(ids.shape[0], past_len, dtype=mask.dtype), mask], dim=1)
    names, present = past_names(len(layout)), past_names(len(layout), "present")
    dyn = torch.export.Dim.DYNAMIC
    try:
        torch.onnx.export(CausalLMWithPast(model).eval(), (ids, full_mask, position_ids(full_mask, past_len), *past),
                          path, input_names=[*LM_INPUTS, *names], output_names=["logits", *present],
                          dynamic_shapes=({0: dyn, 1: dyn}, {0: dyn, 1: dyn}, {0: dyn, 1: dyn},
                                          tuple({0: dyn, 2: dyn} for _ in names)), dynamo=True, verbose=False)
    except Exception as err:  # torch.export's errors are many classes; the architecture is what the user can change
        detail = " ".join(str(err).split())[:300]
        raise UnsupportedModel(f"{type(model).__name__}: torch.onnx could not export it with past key values "
                               f"({type(err).__name__}: {detail})") from err
    return {"inputs": [*LM_INPUTS, *names], "outputs": ["logits", *present], "cache_layout": layout}
