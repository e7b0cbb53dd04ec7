"""Whether a job directory's saved config is safe to run again (``resume=``): it may come from someone else, and
Hydra would call every ``_target_`` in it with the config's arguments."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Keys of a saved config whose ``_target_`` may also name a subclass of what ftlab instantiates there (a user's own
# callback, logger, Lightning strategy or torch optimizer, as ``+callbacks.x._target_=...`` adds); every other
# ``_target_`` must be one that ftlab's config files use.
TARGET_ROLES: dict[tuple[str, ...], str] = {
    ("callbacks", "*"): "lightning.pytorch.callbacks.Callback",
    ("logger", "*"): "lightning.pytorch.loggers.Logger",
    ("trainer", "strategy"): "lightning.pytorch.strategies.Strategy",
    ("optimizer",): "torch.optim.Optimizer",
}
# ftlab classes that configs name and that moved, old path -> new: a job directory saved (or a SLURM job queued)
# before the move still resumes, exports and requeues.
MOVED_TARGETS = {
    "ftlab.runtime.checkpointing.ResumableCheckpoint": "ftlab.training.checkpointing.ResumableCheckpoint",
}
# Options that would run code shipped with a checkpoint or data set; ftlab never sets them.
UNSAFE_OPTIONS = ("trust_remote_code",)


def conf_dir() -> Path:
    """ftlab's config directory: the one Hydra composed this run from, else the repository's ``conf/``."""
    try:
        from hydra.core.hydra_config import HydraConfig

        for source in HydraConfig.get().runtime.config_sources:
            if source.provider == "main" and source.schema == "file":
                return Path(source.path)
    except ValueError:  # not inside @hydra.main (HydraConfig was not set)
        pass
    return Path(__file__).resolve().parents[3] / "conf"


def _walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, str, Any]]:
    """(path of the parent, key, value) for every key of every mapping in a nested dict / list structure."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, i))


def _dotted(path: tuple, key: Any) -> str:
    out = ""
    for part in (*path, key):
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return out


@functools.lru_cache(maxsize=4)
def config_targets(directory: str) -> frozenset[str]:
    """Every ``_target_`` that ftlab's config groups can put into a job's config: read from ``conf/**/*.yaml``, so the
    list never drifts from the configs (the ``hydra`` group and ``hydra:`` sections, which a job's saved config never
    holds, left out)."""
    import yaml

    root, targets = Path(directory), set()
    for file in sorted(root.rglob("*.yaml")):
        if file.relative_to(root).parts[0] == "hydra":
            continue
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k != "hydra"}
        targets.update(v for _, k, v in _walk(data) if k == "_target_" and isinstance(v, str))
    return frozenset(targets)


def _role(path: tuple) -> str | None:
    """The base class a ``_target_`` under ``path`` may subclass (``TARGET_ROLES``), or None."""
    for pattern, base in TARGET_ROLES.items():
        if len(pattern) == len(path) and all(p in ("*", k) and isinstance(k, str) for p, k in zip(pattern, path)):
            return base
    return None


def _subclass_of(target: str, base: str) -> bool:
    """Whether ``target`` names a class that subclasses ``base``; imports its module, instantiates nothing."""
    module, _, name = target.rpartition(".")
    if not module or not all(part.isidentifier() for part in target.split(".")):
        return False
    try:
        cls = getattr(importlib.import_module(module), name)
        base_module, _, base_name = base.rpartition(".")
        base_cls = getattr(importlib.import_module(base_module), base_name)
    except Exception:  # not importable: not allowed
        return False
    return isinstance(cls, type) and issubclass(cls, base_cls)


def upgrade_targets(node: Any) -> Any:
    """``node`` (plain dicts and lists, as ``OmegaConf.to_container`` gives) with every moved ``_target_`` written
    as it is named today (``MOVED_TARGETS``)."""
    if isinstance(node, dict):
        return {k: (MOVED_TARGETS.get(v, v) if k == "_target_" and isinstance(v, str) else upgrade_targets(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [upgrade_targets(v) for v in node]
    return node


def load_saved_config(path: Path):
    """A job's saved ``.hydra/config.yaml`` as a DictConfig, its moved targets upgraded (``upgrade_targets``);
    nothing is resolved, so nothing in it runs. Parse errors propagate to the caller, which names the file."""
    from omegaconf import OmegaConf

    return OmegaConf.create(upgrade_targets(OmegaConf.to_container(OmegaConf.load(path), resolve=False)))


def check_saved_config(saved: dict, where: str) -> list[str]:
    """Problems that make a saved job config unsafe to run again: a ``_target_`` that ftlab's configs never use (it
    would be called with the config's arguments: ``os.system`` and its command, say), or an option that runs code
    shipped with a checkpoint or data set. One line each, naming the key, the value and what is allowed."""
    allowed = config_targets(str(conf_dir()))
    problems = []
    for path, key, value in _walk(saved):
        if key == "_target_":
            base = _role(path)
            if isinstance(value, str) and (value in allowed or (base and _subclass_of(value, base))):
                continue
            extra = f", or a subclass of {base}" if base else ""
            problems.append(f"{where} sets {_dotted(path, key)}={value!r}, a target ftlab's configs do not use; "
                            f"allowed: {', '.join(sorted(allowed))}{extra}")
        elif key in UNSAFE_OPTIONS and value not in (None, False):
            problems.append(f"{where} sets {_dotted(path, key)}={value!r}: ftlab never runs code shipped with a "
                            "checkpoint or data set; valid: false (or absent)")
    return problems
