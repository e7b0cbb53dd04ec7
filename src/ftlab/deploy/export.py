"""What a job leaves behind: the fine-tuned model in Hugging Face format and ``metrics.json``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

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


def export_model(module, directory: Path, state_dict: dict[str, Any] | None = None) -> Path:
    """Save the (best) model and its tokenizer with ``save_pretrained``; ``pipeline()`` loads the result.

    ``state_dict`` is the LightningModule's full state dict when the model is sharded (gathered by the strategy on
    every rank; this runs on rank 0 only).
    """
    directory.mkdir(parents=True, exist_ok=True)
    if state_dict is not None:
        state_dict = {k.removeprefix("model."): v for k, v in state_dict.items() if k.startswith("model.")}
    module.model.save_pretrained(directory, state_dict=state_dict)
    module.tokenizer.save_pretrained(directory)
    set_permissions(directory)
    return directory


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
