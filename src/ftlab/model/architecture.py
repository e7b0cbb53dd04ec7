"""The model before any weights load: the options of the ``model`` group, the checks of ``model.*`` (its files first,
then its architecture on the meta device) and the positions it reads; loading weights is ``loading.py``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftlab.core.assets import resolve_path
from ftlab.core.checks import Checker
from ftlab.model.local_files import model_dir_problem
from ftlab.tasks.specs import TASK_SPECS

if TYPE_CHECKING:
    from torch import nn

MODEL_OPTIONS = ("pretrained_model_name_or_path", "revision", "gguf_file", "cache_dir", "gradient_checkpointing",
                 "compile")
# RoBERTa-style position ids start after the padding index: max_position_embeddings - (pad_token_id + 1) are usable.
PADDING_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer", "xlm-roberta-xl")


def gguf_cache_dir(model_cfg: dict[str, Any]) -> str:
    """Where dequantised GGUF checkpoints are kept: ``model.cache_dir``, else ``$FTLAB_CACHE`` or ~/.cache/ftlab."""
    return os.path.expanduser(model_cfg.get("cache_dir") or os.environ.get("FTLAB_CACHE", "~/.cache/ftlab"))


def dequantized_path(source: Path, cache_dir: str) -> Path:
    """Where the fp32 copy of a GGUF file lives, keyed by the file's path, size and mtime."""
    stat = source.stat()
    key = hashlib.sha256(f"{source.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    return Path(cache_dir) / "models" / f"{source.stem}-{key}"


def max_positions(config) -> int | None:
    """The longest input the model's position embeddings allow (None: not bounded by the config, e.g. ALiBi)."""
    n = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if n and getattr(config, "model_type", "") in PADDING_OFFSET_POSITIONS:
        n -= (config.pad_token_id or 0) + 1
    return n


def meta_model(model_cfg: dict[str, Any], num_labels: int = 2, task: str = "text_classification") -> nn.Module:
    """The model's architecture on the meta device: parameter names and shapes without loading weights.

    A GGUF checkpoint is not dequantised for this: its config comes from the GGUF metadata (or the cached copy).
    """
    # Seconds to import, and needed only here: the settings are checked without them.
    import torch
    from transformers import AutoConfig

    path = resolve_path(model_cfg["pretrained_model_name_or_path"])
    kwargs: dict[str, Any] = {}
    gguf = model_cfg.get("gguf_file")
    if gguf:
        cached = dequantized_path(Path(path, gguf), gguf_cache_dir(model_cfg))
        path, kwargs = (str(cached), {}) if (cached / "config.json").exists() else (path, {"gguf_file": gguf})
    config = AutoConfig.from_pretrained(path, revision=model_cfg.get("revision"), trust_remote_code=False,
                                        num_labels=num_labels, **kwargs)
    with torch.device("meta"):
        return TASK_SPECS[task].model_class().from_config(config, trust_remote_code=False)


def check_model_files(c: Checker) -> bool:
    """Record problems with ``model.pretrained_model_name_or_path`` and ``model.gguf_file`` that the files show
    (a missing directory, no config.json, broken weights, no tokenizer); whether the architecture may be built."""
    key = "model.pretrained_model_name_or_path"
    uri = c.get(key)
    if uri is None:
        c.fail(key, "required: a local checkpoint directory or a Hugging Face hub name")
        return False
    try:
        path = resolve_path(str(uri))
    except FileNotFoundError as err:
        c.fail(key, str(err))
        return False
    gguf = c.get("model.gguf_file")
    if gguf is not None and not Path(path, str(gguf)).is_file():
        c.fail("model.gguf_file", f"no such file in {path}")
        return False
    if gguf is None and (os.path.isabs(path) or path.startswith(".") or Path(path).is_dir()):
        if problem := model_dir_problem(Path(path), config_alone=bool(c.get("plan_only"))):
            c.fail(key, problem)
            return False
    return True


def check_model(c: Checker) -> nn.Module | None:
    """Once ``check_model_files`` passed: record problems with the architecture and ``max_length``; return the
    architecture on the meta device (no weights) so that strategies can be checked against real parameter names, or
    None."""
    try:
        model = meta_model(c.plain("model"), task=c.get("task"))
    except Exception as err:  # hub names that cannot be reached, unknown architectures, broken configs
        c.fail("model.pretrained_model_name_or_path", f"cannot load its config: {type(err).__name__}: "
                                                      f"{str(err).splitlines()[0]}")
        return None
    limit = max_positions(model.config)
    if limit and isinstance(c.get("max_length"), int) and c.get("max_length") > limit:
        c.fail("max_length", f"the model has {limit} positions; valid: 1..{limit}")
    return model
