"""Load checkpoints and tokenizers (a task's head on top); what is known before any weights load (the ``model``
options, their checks, the meta-device architecture) is ``architecture.py``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftlab.core.assets import resolve_path
from ftlab.core.atomic_files import building
from ftlab.core.checks import ConfigError, FtlabError
from ftlab.model.anatomy import find_parts
from ftlab.model.architecture import dequantized_path, gguf_cache_dir
from ftlab.tasks.registry import get_task

log = logging.getLogger(__name__)


def checkpoint_dir(model_cfg: dict[str, Any]) -> str:
    """Local directory (or hub name) to load from; a GGUF checkpoint is dequantised once into an fp32 cache."""
    path = resolve_path(model_cfg["pretrained_model_name_or_path"])
    if not model_cfg.get("gguf_file"):
        return path
    return dequantized_gguf(path, model_cfg["gguf_file"], gguf_cache_dir(model_cfg))


def dequantized_gguf(directory: str, gguf_file: str, cache_dir: str) -> str:
    """Dequantise ``directory/gguf_file`` with transformers' GGUF loader and save it as an fp32 checkpoint.

    Dequantising takes seconds to minutes; the saved copy (keyed by the GGUF file's path, size and mtime)
    reloads in well under a second, so only the first run pays.
    """
    source = Path(directory) / gguf_file
    if not source.is_file():
        raise FileNotFoundError(f"no GGUF file {source}")
    target = dequantized_path(source, cache_dir)
    if (target / "config.json").exists():
        return str(target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantising %s once into %s", source, target)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, dtype=torch.float32,
                                                 trust_remote_code=False)
    # save_pretrained refuses a model that still looks quantised; its weights are plain fp32 tensors now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with building(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return str(target)


def load_tokenizer(model_cfg: dict[str, Any], task: str = "text_classification"):
    """Load the fast tokenizer of a checkpoint, giving it a pad token when it has none (GPT-2, LLaMA)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir(model_cfg), revision=model_cfg.get("revision"),
                                              use_fast=True, trust_remote_code=False,
                                              **get_task(task).tokenizer_kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def check_max_length(tokenizer, max_length: int) -> None:
    """``max_length`` leaves room for at least one token of text beside the tokenizer's special tokens ([CLS] and
    [SEP]): below that every text is cut to nothing (or the tokenizer fails)."""
    floor = tokenizer.num_special_tokens_to_add(pair=False) + 1
    if max_length < floor:
        raise ConfigError([f"max_length={max_length}: the tokenizer adds {floor - 1} special token(s) to each text, so "
                           f"no text token would fit; valid: at least {floor} (the model reads up to "
                           f"{tokenizer.model_max_length if tokenizer.model_max_length < 10**9 else 'its limit'})"])


def load_model(model_cfg: dict[str, Any], label_names: list[str], pad_token_id: int | None = None,
               task: str = "text_classification", **load_kwargs: Any) -> nn.Module:
    """Load the checkpoint with the task's head (a fresh one for ``label_names`` when the task has labels).

    Remote code is never executed: only architectures that ship with ``transformers`` load. ``load_kwargs``: what
    the strategy adds (``Strategy.load_kwargs``).
    """
    labels = {}
    spec = get_task(task)
    if spec.has_labels:
        labels = {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
                  "label2id": {name: i for i, name in enumerate(label_names)}}
    # A head of another shape is replaced (a fine-tuned classifier tuned again on other labels); loading_problem
    # refuses any other tensor the checkpoint lacks or holds in another shape.
    model, info = spec.model_class().from_pretrained(
        checkpoint_dir(model_cfg), revision=model_cfg.get("revision"), trust_remote_code=False,
        dtype=torch.float32, output_loading_info=True, ignore_mismatched_sizes=True, **labels, **load_kwargs)
    if problem := loading_problem(model, info):
        raise FtlabError(f"model.pretrained_model_name_or_path={model_cfg['pretrained_model_name_or_path']!r}: "
                         f"{problem}")
    if pad_token_id is not None and model.config.pad_token_id is None:
        # Decoder classifiers pool the last non-pad token and need to know which id is padding.
        model.config.pad_token_id = pad_token_id
    if model_cfg.get("gradient_checkpointing"):
        # Non-reentrant: the reentrant variant returns no gradients when the blocks below are frozen
        # (transformers issue 21381).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def loading_problem(model: nn.Module, info: dict[str, Any]) -> str | None:
    """Why a loaded model is not the checkpoint's: embeddings or block tensors that ``from_pretrained`` left randomly
    initialised (missing from the checkpoint, or of another shape), which would train and report a plausible but
    wrong result. Head tensors (pooler, final norm, classifier) may be fresh: that is fine-tuning."""
    try:
        parts = find_parts(model)
    except ValueError:  # no block stack found: nothing to tell the head from the pretrained part
        return None
    pretrained = {*parts.embeddings, *(name for block in parts.blocks for name in block)}
    mismatched = {key: (tuple(old), tuple(new)) for key, old, new in info.get("mismatched_keys") or ()}
    missing = sorted(k for k in info.get("missing_keys") or () if k in pretrained)
    reshaped = sorted(k for k in mismatched if k in pretrained)
    if missing:
        return (f"the checkpoint has no weights for {len(missing)} pretrained tensor(s) ({', '.join(missing[:3])}"
                f"{', ...' if len(missing) > 3 else ''}), which would train from random values; valid: a complete "
                "checkpoint (re-download or re-export it)")
    if reshaped:
        key = reshaped[0]
        return (f"{len(reshaped)} pretrained tensor(s) have another shape in the checkpoint than its config.json "
                f"says ({key}: {list(mismatched[key][0])} there, {list(mismatched[key][1])} expected); valid: the "
                "config.json saved with those weights")
    if head := sorted(k for k in mismatched if k not in pretrained):
        log.warning("fresh %s: the checkpoint's has shape %s, this task needs %s", head[0],
                    list(mismatched[head[0]][0]), list(mismatched[head[0]][1]))
    return None
