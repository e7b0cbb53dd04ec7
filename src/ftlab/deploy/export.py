"""What a job leaves behind: the fine-tuned model in Hugging Face format and ``metrics.json``."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

from ftlab.deploy.trained_length import write_record
from ftlab.strategies.adapters import is_adapter_model

FILE_MODE, DIR_MODE = 0o644, 0o755


def set_permissions(directory: Path) -> None:
    """Files under ``directory`` 0o644 and directories (itself included) 0o755, whatever the process umask, so an
    exported model or ONNX file can be shared and served the same way by every job (symbolic links are left alone)."""
    directory = Path(directory)
    os.chmod(directory, DIR_MODE)
    for root, dirs, files in os.walk(directory):
        for name, mode in [*((d, DIR_MODE) for d in dirs), *((f, FILE_MODE) for f in files)]:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, mode)


def export_model(module, directory: Path, state_dict: dict[str, Any] | None = None,
                 max_length: int | None = None) -> Path:
    """Save the (best) model and its tokenizer with ``save_pretrained``; ``pipeline()`` loads the result.

    ``max_length`` (the job's, tokens per text) is recorded beside them in ``ftlab.json``: predicting and serving
    read texts as the model was trained and tested (``ftlab.deploy.trained_length``).

    ``state_dict`` is the LightningModule's full state dict when the model is sharded (gathered by the strategy on
    every rank; this runs on rank 0 only). A PEFT model is saved twice: the adapter alone (``adapter/`` beside
    ``directory``, PEFT's format) and, in ``directory``, the weights with the adapter merged in, which plain
    ``transformers`` loads without ``peft``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if state_dict is not None:
        state_dict = {k.removeprefix("model."): v for k, v in state_dict.items() if k.startswith("model.")}
    model = module.model
    if is_adapter_model(model):
        model = export_adapter(module, directory.parent / "adapter", state_dict)
        state_dict = None
    model.save_pretrained(directory, state_dict=state_dict)
    module.tokenizer.save_pretrained(directory)
    if max_length is not None:
        write_record(directory, max_length)
    set_permissions(directory)
    return directory


def export_adapter(module, directory: Path, state_dict: dict[str, Any] | None = None):
    """Save the adapter (and the head it trains) into ``directory``; return a merged copy of the model.

    The copy leaves the trained module as it is. A sharded model is rebuilt unsharded from the job's config and the
    gathered ``state_dict``. A QLoRA adapter is merged into the base loaded in full precision (so that plain
    ``transformers`` loads the result); it was trained against the 4-bit base, so the merged model approximates the
    trained one (measure it: the adapter on the 4-bit base is the exact trained model).
    """
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    quantized = bool(module.hparams.strategy.get("quantize"))
    if state_dict is not None:
        model, _ = module.build_model()
        model.load_state_dict(state_dict)
    else:  # a QLoRA model is not merged into itself: no copy needed
        model = module.model if quantized else copy.deepcopy(module.model)
    model.save_pretrained(directory)
    set_permissions(directory)
    if quantized:
        trained, (model, _) = model, module.build_model(quantized=False)
        set_peft_model_state_dict(model, get_peft_model_state_dict(trained))
    unwrap_trained_copies(model)
    return model.merge_and_unload()


def unwrap_trained_copies(model) -> None:
    """Put each fully trained module (PEFT's ``modules_to_save`` copy) in place of its wrapper.

    ``merge_and_unload`` does this itself for LoRA, but IA3's unloading copies ``.weight`` from the wrapper and fails
    on a module that has none (BERT's pooler, RoBERTa's classification head; peft 0.21).
    """
    from peft.utils.other import ModulesToSaveWrapper

    for name, module in list(model.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.modules_to_save[module.active_adapters[0]])


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Write metrics as sorted, indented JSON (tensors converted to numbers)."""
    path.write_text(json.dumps({k: _plain(v) for k, v in metrics.items()}, indent=2, sort_keys=True) + "\n")


def format_metrics(metrics: dict[str, Any], prefix: str) -> str:
    """One line ``test/acc=0.9512  test/f1=0.9498 ...`` for the console."""
    return "  ".join(f"{k}={_plain(v):.4f}" for k, v in sorted(metrics.items())
                     if k.startswith(prefix) and isinstance(_plain(v), (int, float)))
