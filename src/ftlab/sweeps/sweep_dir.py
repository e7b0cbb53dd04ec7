"""A sweep directory: its job directories, one row per job read from them, and atomic writes into it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftlab.core.checks import FtlabError, existing_dir
from ftlab.tracking.identity import job_label, saved_yaml, swept_keys

SWEEP_HELP = ("give a sweep directory such as outputs/multirun/DATE/TIME (it holds numbered job directories with "
              ".hydra/)")


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's job directories: numbered sub-directories that Hydra started a job in (they have ``.hydra/``)."""
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit() and (p / ".hydra").is_dir()),
                  key=lambda p: int(p.name))


def check_sweep_dir(sweep_dir: str | Path) -> list[Path]:
    """The job directories of ``sweep_dir``; an ``FtlabError`` naming the directory and what a sweep holds if it has
    none (a missing path, a single job's directory, the parent of sweeps)."""
    sweep_dir = existing_dir(sweep_dir, SWEEP_HELP)
    jobs = job_dirs(sweep_dir)
    if jobs:
        return jobs
    if (sweep_dir / ".hydra").is_dir():
        raise FtlabError(f"{sweep_dir}: a single job's directory (it has .hydra/), not a sweep; {SWEEP_HELP}")
    below = sorted(str(p) for p in [*sweep_dir.glob("*"), *sweep_dir.glob("*/*")] if p.is_dir() and _is_sweep(p))[:3]
    hint = f"; sweeps below it: {', '.join(below)}" if below else ""
    raise FtlabError(f"{sweep_dir}: no job directories in it; {SWEEP_HELP}{hint}")


def _is_sweep(path: Path) -> bool:
    try:
        return bool(job_dirs(path))
    except OSError:
        return False


def collect(sweep_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per job directory: swept values, status (completed / pruned / failed / running), metrics."""
    keys = swept_keys(sweep_dir)
    rows = []
    for job in job_dirs(sweep_dir):
        overrides = [o for o in saved_yaml(job / ".hydra" / "overrides.yaml", []) if isinstance(o, str)]
        config = saved_yaml(job / ".hydra" / "config.yaml", {})
        row: dict[str, Any] = {"job": int(job.name), "overrides": job_label(overrides, keys) or ",".join(overrides)}
        for key in keys:
            row[key] = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+~").split("=", 1)[0] == key), None)
        row["strategy_name"] = (config.get("strategy") or {}).get("name")
        if (job / "curve.csv").exists():  # also for running and failed jobs: how far they got
            row["curve"] = read_curve(job / "curve.csv")
        if (job / "metrics.json").exists():
            metrics = json.loads((job / "metrics.json").read_text())
            monitor = metrics.get("monitor", config.get("monitor", "val/acc"))
            row["strategy_name"] = metrics.get("strategy_label", row["strategy_name"])  # lora(r=8), ia3, partial
            row.update(status="completed", reason="", monitor=monitor, best_val=metrics.get(monitor),
                       lr_value=metrics.get("lr"),  # what the optimizer trained with
                       trainable_pct=100 * metrics.get("params/trainable_fraction", float("nan")),
                       train_time_s=metrics.get("train_time_s"), samples_per_s=metrics.get("train_samples_per_s"),
                       peak_memory_mb=metrics.get("peak_memory_mb"))
            row.update({k: v for k, v in metrics.items()
                        if k.startswith(("test/", "before/test/", "retention/", "deploy/"))  # deploy/: int8 vs fp32
                        and isinstance(v, (int, float))})
            if isinstance(metrics.get("test/auroc_per_class"), dict):
                row["auroc_per_class"] = metrics["test/auroc_per_class"]
        elif (job / "pruned.json").exists():  # a search trial stopped by its pruner: no test result
            pruned = json.loads((job / "pruned.json").read_text())
            monitor = config.get("monitor", "val/acc")
            row.update(status="pruned", reason=f"pruned at step {pruned.get('step')} ({monitor}="
                                               f"{pruned.get(monitor)})", train_time_s=pruned.get("train_time_s"))
        elif (job / "failure.json").exists():
            failure = json.loads((job / "failure.json").read_text())
            row.update(status="failed", reason=failure.get("reason", ""))
        else:
            row.update(status="running", reason="no metrics.json yet (running or interrupted)")
        rows.append(row)
    return rows, keys


def collect_many(sweep_dirs: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of several sweeps as one: jobs named ``<sweep>/<job>``, and ``sweep`` as the first swept key so that
    configurations never merge across sweeps."""
    rows, keys = [], ["sweep"]
    for sweep_dir in sweep_dirs:
        part, part_keys = collect(sweep_dir)
        for row in part:
            row.update(job=f"{sweep_dir.name}/{row['job']}", sweep=sweep_dir.name)
        rows += part
        keys += [k for k in part_keys if k not in keys]
    return rows, keys


def by_configuration(rows: list[dict[str, Any]], keys: list[str], keep) -> dict[str, list[dict[str, Any]]]:
    """The rows for which ``keep(row)`` holds, grouped by configuration (``config_name``), in the sweep's order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if keep(row):
            groups.setdefault(config_name(row, keys), []).append(row)
    return groups


def config_name(row: dict[str, Any], keys: list[str]) -> str:
    """A configuration's name: the job's swept values other than ``seed`` (keys a sweep did not vary are left out)."""
    return ",".join(f"{k}={row[k]}" for k in keys if k != "seed" and row.get(k) is not None) or "(all)"


def read_curve(path: Path) -> list[dict[str, float]]:
    """A job's ``curve.csv`` as numbers (empty cells: None)."""
    import csv

    with open(path, newline="") as f:
        return [{k: float(v) if v not in ("", None) else None for k, v in row.items()} for row in csv.DictReader(f)]
