"""Identity of a job inside a Hydra sweep: the sweep's group name, the swept keys, a job label, a stable run id."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import yaml

from ftlab.core.overrides import override_key, override_value


def saved_yaml(path: Path, default):
    """A YAML file Hydra saved in a job's ``.hydra/``: its content, or ``default`` when it is missing, empty, cut short
    or not of ``default``'s type (a job killed while Hydra wrote it must not break the report of the others)."""
    try:
        value = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return default
    return value if isinstance(value, type(default)) else default


def swept_keys(sweep_dir: Path, job_dirs: list[Path] | None = None) -> list[str]:
    """Keys the sweep varies (``strategy``, ``lr``, ...), read from the sweep's ``multirun.yaml``.

    Hydra writes that file before launching jobs; an override with a choice list, range or sweep
    function (``lr=1e-5,2e-5``) is a swept key, and so is every key of a search sweeper's space, including keys that
    only some trials set (a conditional space: ``strategy.trainable_layers`` for partial trials only). ``job_dirs``:
    the job directories to read a search's space from (default: every ``*/.hydra/`` below ``sweep_dir``; the report
    passes the ones it accepted, without links to other sweeps).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweep_dir = Path(sweep_dir)
    path = sweep_dir / "multirun.yaml"
    jobs = sorted(sweep_dir.glob("*/.hydra/hydra.yaml")) if job_dirs is None else [
        j / ".hydra" / "hydra.yaml" for j in job_dirs if (j / ".hydra" / "hydra.yaml").exists()]
    if not path.exists():  # search sweepers (Optuna) write none: every job's hydra.yaml holds the space
        if not jobs:
            return []
        path = jobs[0]
    hydra_cfg = saved_yaml(path, {}).get("hydra") or {}
    task = [o for o in (hydra_cfg.get("overrides") or {}).get("task") or [] if isinstance(o, str)]
    overrides = OverridesParser.create().parse_overrides(list(task))
    keys = [override_key(o.get_key_element()) for o in overrides if o.is_sweep_override()]
    params = (hydra_cfg.get("sweeper") or {}).get("params") or {}
    keys += [override_key(k) for k in params if override_key(k) not in keys]
    if params and path != sweep_dir / "multirun.yaml":
        per_job = [{override_key(o) for o in _task_overrides(j) if "=" in o} for j in jobs]
        conditional = set.union(*per_job) - set.intersection(*per_job)
        keys += sorted(conditional - set(keys))
    if str((hydra_cfg.get("sweeper") or {}).get("_target_", "")).endswith(".CompareRace"):
        keys += [k for k in _differing(jobs) if k not in keys]  # the race sets its keys per job, none on the line
    return keys


def _differing(jobs: list[Path]) -> list[str]:
    """Keys whose value differs between the jobs, or that some jobs do not set, in the order they first appear."""
    per_job = [{override_key(o): override_value(o) for o in _task_overrides(j) if "=" in o} for j in jobs]
    keys = dict.fromkeys(key for job in per_job for key in job)  # in order of first appearance
    return [key for key in keys if len({job.get(key) for job in per_job}) > 1]


def _task_overrides(hydra_yaml: Path) -> list[str]:
    task = ((saved_yaml(hydra_yaml, {}).get("hydra") or {}).get("overrides") or {}).get("task") or []
    return [o for o in task if isinstance(o, str)]


def job_label(overrides: list[str], keys: list[str]) -> str:
    """``strategy=partial,lr=2e-05``: the job's overrides of the swept keys, in the sweep's order."""
    by_key = {override_key(o): o.lstrip("+~") for o in overrides if "=" in o}
    return ",".join(by_key[k] for k in keys if k in by_key)


def group_name(sweep_dir: str | Path) -> str:
    """A readable, unique W&B group for a sweep: its directory relative to ``outputs/`` (or its last parts)."""
    parts = Path(os.path.abspath(sweep_dir)).parts
    tail = parts[parts.index("outputs") + 1:] if "outputs" in parts else parts[-3:]
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", "/".join(tail))[-120:]


def run_id(output_dir: str | Path) -> str:
    """Stable W&B run id of a job directory: a requeued or resumed job logs into the same run, also when the
    directory moved since the run began (the id of the one run in its ``wandb/`` folder, named ``[offline-]run-
    <time>-<id>`` by W&B); else one derived from the directory's path."""
    ids = {p.name.rsplit("-", 1)[1] for p in Path(output_dir).glob("wandb/*run-*-*") if p.is_dir()}
    if len(ids) == 1:
        return ids.pop()
    return hashlib.sha1(os.path.abspath(output_dir).encode()).hexdigest()[:16]
