"""Whether a job directory's saved config is safe to run again (``resume=``): it may come from someone else, and
Hydra would call every ``_target_`` in it with the config's arguments."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ftlab.core.checks import ConfigError
from ftlab.core.config_tree import dotted, subclass_of, walk

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


def _call_end(text: str, start: int) -> int:
    """The index just past the ``}`` closing the interpolation that opens at ``start`` (quotes and escapes
    respected), or the end of ``text`` when it never closes."""
    depth, quote, i = 0, None, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"" and depth:
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def resolver_calls(text: str) -> list[str]:
    """Every resolver call in one config string, each as written (``${oc.env:FTLAB_CACHE,'~/.cache/ftlab'}``),
    nested ones too. Plain interpolations (``${output_dir}``) call nothing and are left out; a ``${`` after an odd
    number of backslashes is escaped text (an even number is literal backslashes, then a real interpolation)."""
    calls = []
    for start in (i for i in range(len(text) - 1) if text.startswith("${", i)):
        backslashes = len(text[:start]) - len(text[:start].rstrip("\\"))
        if backslashes % 2:
            continue
        head = re.match(r"\s*[^\s}:${]*\s*(.?)", text[start + 2:])
        if head[1] in (":", "$"):  # name:args, or a name built from an interpolation
            calls.append(text[start:_call_end(text, start)])
    return calls


def resolver_name(call: str) -> str:
    """The resolver a call (``resolver_calls``) names; ``$`` when its name is itself an interpolation."""
    return re.match(r"\$\{\s*([^\s}:${]*)", call)[1] or "$"


@functools.lru_cache(maxsize=4)
def config_resolvers(directory: str) -> frozenset[str]:
    """The resolver calls (``resolver_calls``) that ftlab's own config files outside the ``hydra`` group and
    ``hydra:`` sections make: the only ones a saved job config may hold, so the list never drifts from the configs."""
    return frozenset(call for _, _, value in _walk_conf(Path(directory)) if isinstance(value, str)
                     for call in resolver_calls(value))


def _walk_conf(root: Path) -> Iterator[tuple[tuple, str, Any]]:
    """``walk`` over every config file in ``root`` but the ``hydra`` group and ``hydra:`` sections."""
    import yaml

    for file in sorted(root.rglob("*.yaml")):
        if file.relative_to(root).parts[0] == "hydra":
            continue
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k != "hydra"}
        yield from walk(data)


@functools.lru_cache(maxsize=4)
def config_targets(directory: str) -> frozenset[str]:
    """Every ``_target_`` that ftlab's config groups can put into a job's config: read from ``conf/**/*.yaml``, so the
    list never drifts from the configs (the ``hydra`` group and ``hydra:`` sections, which a job's saved config never
    holds, left out)."""
    return frozenset(v for _, k, v in _walk_conf(Path(directory)) if k == "_target_" and isinstance(v, str))


def _role(path: tuple) -> str | None:
    """The base class a ``_target_`` under ``path`` may subclass (``TARGET_ROLES``), or None."""
    for pattern, base in TARGET_ROLES.items():
        if len(pattern) == len(path) and all(p in ("*", k) and isinstance(k, str) for p, k in zip(pattern, path)):
            return base
    return None


def upgrade_targets(node: Any) -> Any:
    """``node`` (plain dicts and lists, as ``OmegaConf.to_container`` gives) with every moved ``_target_`` written
    as it is named today (``MOVED_TARGETS``)."""
    if isinstance(node, dict):
        return {k: (MOVED_TARGETS.get(v, v) if k == "_target_" and isinstance(v, str) else upgrade_targets(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [upgrade_targets(v) for v in node]
    return node


def load_saved_config(path: Path, where: str, output_dir: Path | None = None) -> DictConfig:
    """A job's saved ``.hydra/config.yaml`` as a DictConfig, its moved targets upgraded (``upgrade_targets``), once it
    is known to be safe to run: checked as written (``check_saved_config``: no foreign target, no resolver ftlab's
    configs do not use, so resolving it calls nothing), then checked again resolved, since an interpolation can put a
    ``_target_`` where none was written. ``output_dir`` replaces the saved one (a resolver of the run that wrote it).
    Raises ConfigError naming ``where`` and the file."""
    try:
        loaded = OmegaConf.load(path)
    except Exception as err:  # YAML syntax (yaml.YAMLError), undecodable bytes, OmegaConf's own errors
        mark = getattr(err, "problem_mark", None)
        detail = (f"line {mark.line + 1}, column {mark.column + 1}: {err.problem}" if mark is not None
                  and getattr(err, "problem", None) else " ".join(str(err).split())[:200])
        raise ConfigError([f"{where}: {path} cannot be parsed ({type(err).__name__}: {detail}); valid: the YAML config "
                           "Hydra saved for the job"]) from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError([f"{where}: {path} is a {type(loaded).__name__}, not a mapping of config keys; valid: the "
                           "YAML config Hydra saved for the job"])
    cfg = OmegaConf.create(upgrade_targets(OmegaConf.to_container(loaded, resolve=False)))
    job = Path(path).parent.parent  # <job>/.hydra/config.yaml: no module is imported from the job directory
    if problems := check_saved_config(OmegaConf.to_container(cfg, resolve=False), f"{where}: {path}", job):
        raise ConfigError(problems)
    if output_dir is not None:
        cfg.output_dir = str(output_dir)
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # an interpolation to a missing key, a resolver that needs a running Hydra app
        raise ConfigError([f"{where}: {path} does not resolve ({' '.join(str(err).split())[:200]}); valid: the YAML "
                           "config Hydra saved for the job"]) from None
    if problems := check_saved_config(resolved, f"{where}: {path} (resolved)", job):
        raise ConfigError(problems)
    return cfg


def check_saved_config(saved: dict, where: str, untrusted: Path | None = None) -> list[str]:
    """Problems that make a saved job config unsafe to run again: a ``_target_`` that ftlab's configs never use (it
    would be called with the config's arguments: ``os.system`` and its command, say), or an option that runs code
    shipped with a checkpoint or data set, or a resolver (``${oc.create:...}``) that ftlab's configs do not use: one
    could build a target when the config is resolved. One line each, naming the key, the value and what is allowed."""
    allowed, resolvers = config_targets(str(conf_dir())), config_resolvers(str(conf_dir()))
    problems = []
    for path, key, value in walk(saved):
        if key == "_target_":
            base = _role(path)
            if isinstance(value, str) and (value in allowed or (base and subclass_of(value, base, untrusted))):
                continue
            extra = f", or a subclass of {base}" if base else ""
            problems.append(f"{where} sets {dotted(path, key)}={value!r}, a target ftlab's configs do not use; "
                            f"allowed: {', '.join(sorted(allowed))}{extra}")
        elif isinstance(value, str) and (calls := [c for c in resolver_calls(value) if c not in resolvers]):
            problems.append(f"{where} sets {dotted(path, key)}={value!r}, which calls the resolver "
                            f"{resolver_name(calls[0])!r}; resolving a saved config must call nothing ftlab's "
                            f"configs do not; valid: the value itself, or one of {', '.join(sorted(resolvers))}")
        elif key in UNSAFE_OPTIONS and value not in (None, False):
            problems.append(f"{where} sets {dotted(path, key)}={value!r}: ftlab never runs code shipped with a "
                            "checkpoint or data set; valid: false (or absent)")
    return problems
