"""What a local model directory must hold to load (config, complete weights, tokenizer files), checked without loading.

Training (``model.pretrained_model_name_or_path``) and the tools (predict, ONNX export) ask the same question; a
directory without tokenizer files would otherwise train on a handful of special tokens (every word ``[UNK]``) and a
truncated weights file would fail deep inside ``from_pretrained``.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from ftlab.core.assets import resolve_path

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model")


def weights_problem(path: Path) -> str | None:
    """Why the weights file ``path`` cannot load (truncated, corrupt, a shard missing), or None."""
    if path.name.endswith(".index.json"):
        try:
            shards = sorted(set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
            return f"{path.name} is not a valid shard index (JSON with a weight_map)"
        for shard in shards:
            # transformers joins each name to the directory, so "../x" or "/x" would read weights from anywhere.
            # Checked by name, not by resolving: the Hugging Face cache links its shards to ../../blobs on purpose.
            if not isinstance(shard, str):
                return f"{path.name} maps a tensor to {shard!r}, not a file name; valid: shard file names"
            if os.path.isabs(shard) or os.path.normpath(shard).split(os.sep)[0] == "..":
                return (f"{path.name} lists the shard {shard!r}, outside its own directory; valid: file names in "
                        f"{path.parent}")
            if not (path.parent / shard).is_file():
                return f"{path.name} lists the shard {shard}, which is missing"
            if problem := weights_problem(path.parent / shard):
                return problem
        return None
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            # Reads and validates the header only; numpy's reader checks it as PyTorch's does, without importing torch
            # (seconds), which the config's first round of checks never needs.
            with safe_open(str(path), "numpy"):
                pass
        except Exception as err:  # safetensors' own SafetensorError, OSError
            return f"{path.name} is truncated or corrupt ({' '.join(str(err).split())})"
        return None
    with open(path, "rb") as f:  # pytorch_model.bin: a zip archive (torch.save since 1.6) or a legacy pickle
        legacy = f.read(2) == b"\x80\x02"
    if not legacy:
        try:
            with zipfile.ZipFile(path):
                pass
        except (zipfile.BadZipFile, OSError):
            return f"{path.name} is truncated or corrupt (not a readable torch.save archive)"
    import pickle

    import torch

    try:  # what transformers does (weights only), memory-mapped: reads the pickle's objects, not the tensors' data
        torch.load(path, map_location="cpu", weights_only=True, mmap=not legacy)
    except pickle.UnpicklingError:
        return (f"{path.name} holds objects other than tensors, which could run code when loaded; ftlab loads "
                "weights only; valid: model.safetensors, or a torch.save of the state dict's tensors alone")
    return None


def config_only(model_cfg: dict) -> bool:
    """Whether the configured checkpoint is a local directory holding a ``config.json`` and no weights (a model to
    plan, not to train: ``plan_only=true``)."""

    try:
        root = Path(resolve_path(str(model_cfg["pretrained_model_name_or_path"])))
    except FileNotFoundError:
        return False
    return (not model_cfg.get("gguf_file") and (root / "config.json").is_file()
            and not any((root / name).is_file() for name in WEIGHT_FILES))


def model_dir_problem(root: Path, config_alone: bool = False) -> str | None:
    """The first reason the model directory ``root`` cannot load (no config.json, no or broken weights, no tokenizer
    files), saying what a valid directory holds; None when it looks complete. Callers name the directory.
    ``config_alone``: a ``config.json`` is enough (planning a model without its weights)."""
    if not (root / "config.json").is_file():
        return "no config.json there (not a checkpoint directory)"
    if config_alone and not any((root / name).is_file() for name in WEIGHT_FILES):
        return None
    weights = [root / name for name in WEIGHT_FILES if (root / name).is_file()]
    if not weights:
        return (f"no weights; valid: {' or '.join(WEIGHT_FILES[::2])} (or a sharded index) next to config.json "
                f"(plan_only=true plans from config.json alone)")
    if problem := weights_problem(weights[0]):
        return f"{problem}; re-download or re-export the checkpoint"
    if not any((root / name).is_file() for name in TOKENIZER_FILES):
        return (f"no tokenizer files; valid: one of {', '.join(TOKENIZER_FILES)} next to config.json (save the "
                "tokenizer with save_pretrained next to the model)")
    return None
