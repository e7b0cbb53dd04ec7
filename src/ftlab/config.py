"""Validate a composed config before anything heavy loads: collect every problem, then raise once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ftlab.assets import resolve_path
from ftlab.tasks import TASKS

SCHEDULERS = ("linear", "cosine", "constant_with_warmup", "constant", "cosine_with_restarts", "polynomial", "none")
SOURCES = {"text_classification": ("folder", "files", "hub"), "token_classification": ("conll", "files"),
           "causal_lm": ("folder", "files")}
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
CUDA_ONLY_PRECISIONS = ("16-mixed", "16", "16-true")


class ConfigError(ValueError):
    """Every problem found in a config, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the config:\n{lines}")


class _Checker:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.problems: list[str] = []

    def get(self, key: str) -> Any:
        return OmegaConf.select(self.cfg, key, default=None)

    def fail(self, key: str, problem: str) -> None:
        self.problems.append(f"{key}={self.get(key)!r}: {problem}")

    def positive(self, key: str, kind=float) -> None:
        value = self.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0 or kind(value) != value:
            self.fail(key, f"must be a positive {kind.__name__}")

    def choice(self, key: str, choices) -> bool:
        if self.get(key) not in choices:
            self.fail(key, f"unknown value; valid choices: {', '.join(map(str, choices))}")
            return False
        return True


def _check_model(c: _Checker):
    """Build the architecture on the meta device (no weights) so strategies can be checked against real names."""
    key = "model.pretrained_model_name_or_path"
    uri = c.get(key)
    if uri is None:
        c.fail(key, "required: a local checkpoint directory or a Hugging Face hub name")
        return None
    try:
        path = resolve_path(str(uri))
    except FileNotFoundError as err:
        c.fail(key, str(err))
        return None
    gguf = c.get("model.gguf_file")
    if gguf is not None and not Path(path, str(gguf)).is_file():
        c.fail("model.gguf_file", f"no such file in {path}")
        return None
    if gguf is None and (os.path.isabs(path) or path.startswith(".")):
        if not Path(path, "config.json").exists():
            c.fail(key, f"no checkpoint (config.json) at {path}")
            return None
    from ftlab.models import meta_model

    try:
        model_cfg = OmegaConf.to_container(c.cfg.model, resolve=True)
        return meta_model({**model_cfg, "pretrained_model_name_or_path": path}, task=c.get("task"))
    except Exception as err:  # hub names that cannot be reached, unknown architectures, broken configs
        c.fail(key, f"cannot load its config: {type(err).__name__}: {str(err).splitlines()[0]}")
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_strategy(c: _Checker, model) -> None:
    from ftlab.models import ArchitectureError, find_parts
    from ftlab.strategies import STRATEGIES, StrategyError, select, unmatched_patterns

    if not c.choice("strategy.name", tuple(STRATEGIES)):
        return
    name = c.get("strategy.name")
    before = len(c.problems)
    for flag in ("strategy.train_embeddings", "strategy.train_head"):
        if c.get(flag) is not None and not isinstance(c.get(flag), bool):
            c.fail(flag, "must be true or false")
    if name == "gradual_unfreezing":
        c.positive("strategy.every", int)
        c.choice("strategy.unit", ("epoch", "step"))
    decay = c.get("optimizer.layer_decay")
    if decay is not None and not (isinstance(decay, (int, float)) and 0 < decay <= 1):
        c.fail("optimizer.layer_decay", "must be in (0, 1] or null")
    if model is None:
        return
    try:
        blocks = len(find_parts(model).blocks)
    except ArchitectureError as err:
        blocks = None
        if name not in ("full", "pattern") or decay is not None:
            c.fail("strategy.name" if decay is None else "optimizer.layer_decay", f"{err}")
            return
    if name == "partial":
        k = c.get("strategy.trainable_layers")
        if not _is_int(k):
            c.fail("strategy.trainable_layers", "must be an integer (negative: bottom |k| blocks)")
            return
        if abs(k) > blocks:
            c.fail("strategy.trainable_layers",
                   f"the model has only {blocks} layers; valid: -{blocks}..{blocks} (negative: bottom |k|)")
            return
    if name == "pattern":
        names = [n for n, _ in model.named_parameters()]
        for key in ("strategy.train", "strategy.freeze"):
            value = c.get(key)
            if value is not None and not OmegaConf.is_list(value):
                c.fail(key, "must be a list of regular expressions")
            else:
                for problem in unmatched_patterns(names, [str(v) for v in value or []]):
                    c.problems.append(f"{key}: {problem}")
    if len(c.problems) > before:
        return  # selecting needs a sane strategy config
    try:
        select(model, OmegaConf.to_container(c.cfg.strategy, resolve=True))
    except StrategyError as err:
        c.fail("strategy", str(err))


def _check_columns(c: _Checker, frame, file, columns: tuple[str, ...]) -> None:
    """Every configured column (``data.text_column``, ...) is in the table read from ``file``."""
    for col in columns:
        if c.get(col) not in frame.columns:
            c.fail(col, f"column absent from {file}; columns there: {', '.join(map(str, frame.columns))}")


def _label_count(c: _Checker) -> int | None:
    """Check that the data files exist and have the configured columns; return the number of classes."""
    source = c.get("data.source")
    if source == "hub":
        return None  # needs the network; checked when loading
    if c.get("data.path") is None:
        c.fail("data.path", "required: the training data file or folder")
        return None
    path = resolve_path(str(c.get("data.path")))
    if not Path(path).exists():
        c.fail("data.path", f"no such file or directory: {path}")
        return None
    if source == "folder":
        labels = [p for p in Path(path).iterdir() if p.is_dir() and any(p.iterdir())]
        return len(labels)
    from ftlab.data import SPLIT_PATHS, TABULAR_SUFFIXES, read_table

    classes: set = set()
    for key in (f"data.{name}" for _, name in SPLIT_PATHS):
        value = c.get(key)
        if value is None:
            continue
        file = resolve_path(str(value))
        if not Path(file).is_file():
            c.fail(key, f"no such file: {file}")
            continue
        if Path(file).suffix.lower() not in TABULAR_SUFFIXES:
            c.fail(key, f"unsupported file type; valid suffixes: {', '.join(TABULAR_SUFFIXES)}")
            continue
        frame = read_table(file)
        _check_columns(c, frame, file, ("data.text_column", "data.label_column"))
        if c.get("data.label_column") in frame.columns:
            classes |= set(frame[c.get("data.label_column")].dropna().astype(str))
    return len(classes) if classes else None


def _check_hardware(c: _Checker) -> None:
    """Precision and accelerator must be runnable here (fp16 has no CPU kernels for training)."""
    import torch

    accelerator = str(c.get("trainer.accelerator") or "auto")
    has_cuda = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not has_cuda:
        c.fail("trainer.accelerator", "no CUDA GPU is visible here; valid choices: cpu, auto")
    precision = str(c.get("trainer.precision") or "32-true")
    if c.choice("trainer.precision", PRECISIONS):
        on_cpu = accelerator == "cpu" or (accelerator == "auto" and not has_cuda)
        if on_cpu and precision in CUDA_ONLY_PRECISIONS:
            c.fail("trainer.precision", "float16 training needs a CUDA GPU; on CPU use bf16-mixed or 32-true")
    strategy = c.get("trainer.strategy")
    spec = str(strategy).lower()
    if "deepspeed" in spec:
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            c.fail("trainer.strategy", "DeepSpeed is not installed: pip install -e '.[deepspeed]'")
        stage = strategy.get("stage") if hasattr(strategy, "get") else None
        if "stage_3" in spec or stage == 3:
            # ZeRO-3 shards the weights themselves; the export gathers FSDP shards only.
            c.fail("trainer.strategy", "ZeRO stage 3 is not supported; valid choices: deepspeed_stage_1, "
                                       "deepspeed_stage_2, or trainer=fsdp to shard the weights")


def _check_task_data(c: _Checker, task: str) -> None:
    """Token classification and causal LM: the files exist and hold the configured columns."""
    from ftlab import lm
    from ftlab.data import SPLIT_PATHS, TABULAR_SUFFIXES, read_table

    if task == "causal_lm":
        if c.get("data.format") is not None:
            c.choice("data.format", lm.FORMATS)
        columns = ("data.prompt_column", "data.response_column") if c.get("data.format") == "prompt_response" else (
            "data.text_column",)
    else:
        columns = ("data.tokens_column", "data.tags_column")
    for key in (f"data.{name}" for _, name in SPLIT_PATHS):
        value = c.get(key)
        if value is None:
            if key == "data.path":
                c.fail(key, "required: the training data file or folder")
            continue
        path = Path(resolve_path(str(value)))
        if not path.exists():
            c.fail(key, f"no such file or directory: {path}")
        elif path.is_file() and path.suffix.lower() in TABULAR_SUFFIXES:
            _check_columns(c, read_table(str(path)), path, columns)
        elif path.is_dir() and c.get("data.source") != "folder":
            c.fail(key, "is a folder; use data.source=folder, or give a file")


def _check_data(c: _Checker) -> None:
    task = c.get("task")
    if not c.choice("data.source", SOURCES.get(task, ())):
        return
    if task == "text_classification":
        n_classes = _label_count(c)
        if n_classes is not None and n_classes < 2:
            c.fail("data.label_column", f"found {n_classes} class(es); classification needs at least 2")
    else:
        _check_task_data(c, task)
    for key, provided in (("data.val_size", "data.val_path"), ("data.test_size", "data.test_path")):
        value = c.get(key)
        if not isinstance(value, (int, float)) or not 0 <= value < 1:
            c.fail(key, "must be a fraction in [0, 1)")
        elif value == 0 and c.get(provided) is None and c.get("data.source") != "hub":
            c.fail(key, f"must be > 0 when {provided} is not given (the split would be empty)")
    sizes = [c.get("data.val_size"), c.get("data.test_size")]
    if all(isinstance(v, (int, float)) for v in sizes) and sum(sizes) >= 1:
        c.fail("data.val_size", f"val_size + test_size = {sum(sizes)} leaves no training data")
    for key in ("data.max_train_samples", "data.max_eval_samples"):
        if c.get(key) is not None:
            c.positive(key, int)


def validate_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` listing every problem in ``cfg`` (key, bad value, valid choices)."""
    c = _Checker(cfg)
    c.positive("lr")
    for key in ("batch_size", "max_length"):
        c.positive(key, int)
    if c.get("eval_batch_size") is not None:
        c.positive("eval_batch_size", int)
    if not isinstance(c.get("seed"), int):
        c.fail("seed", "must be an integer")
    if c.choice("task", tuple(TASKS)):
        c.choice("monitor", TASKS[c.get("task")].monitors)
    if c.get("export_onnx") and c.get("task") != "text_classification":
        c.fail("export_onnx", "ONNX export is implemented for task=text_classification only")
    c.choice("monitor_mode", ("min", "max"))
    c.choice("scheduler.name", SCHEDULERS)
    ratio = c.get("scheduler.warmup_ratio")
    if ratio is not None and not (isinstance(ratio, (int, float)) and 0 <= ratio < 1):
        c.fail("scheduler.warmup_ratio", "must be a fraction in [0, 1)")
    steps = c.get("scheduler.warmup_steps")
    if steps is not None and not (isinstance(steps, int) and steps >= 0):
        c.fail("scheduler.warmup_steps", "must be an integer >= 0 or null")
    if c.get("trainer._target_") is None:
        c.fail("trainer._target_", "the trainer group must configure lightning.Trainer")
    _check_hardware(c)
    if c.get("export_onnx"):
        import importlib.util

        missing = [m for m in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            c.fail("export_onnx", f"needs the onnx extra ({', '.join(missing)} missing): pip install -e \".[onnx]\"")
    if c.get("task") in TASKS:
        _check_data(c)
        _check_strategy(c, _check_model(c))
    if c.problems:
        raise ConfigError(c.problems)
