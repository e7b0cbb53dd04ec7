"""A sweep directory: its job directories, one row per job read from them, and atomic writes into it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftlab.core.checks import FtlabError, existing_dir, is_number
from ftlab.core.overrides import override_key, override_value
from ftlab.sweeps.comparable import DATA_IDENTITY, global_choices, setup_of
from ftlab.tracking.identity import job_label, saved_yaml, swept_keys

SWEEP_HELP = ("give a sweep directory such as outputs/multirun/DATE/TIME (it holds numbered job directories with "
              ".hydra/)")


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's job directories: numbered sub-directories that Hydra started a job in (they have ``.hydra/``),
    without the links that ``refused_links`` names."""
    return _listing(sweep_dir)[0]


def refused_links(sweep_dir: Path) -> list[str]:
    """One line per numbered link that is left out of the sweep: it points outside the sweep directory (another
    job of another sweep, with its own model and data) or at a job the sweep already has (it would count twice)."""
    return _listing(sweep_dir)[1]


def _listing(sweep_dir: Path) -> tuple[list[Path], list[str]]:
    candidates = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit() and (p / ".hydra").is_dir()),
                        key=lambda p: (p.is_symlink(), int(p.name)))  # real directories claim their path first
    root, seen = sweep_dir.resolve(), {}
    jobs, refused = [], []
    for path in candidates:
        real = path.resolve()
        if not real.is_relative_to(root):
            refused.append(f"{path}: a link to {real}, outside the sweep directory; left out of the report")
        elif real in seen:
            refused.append(f"{path}: a link to {real}, which the report already has as job {seen[real]}; counted once")
        else:
            seen[real] = path.name
            jobs.append(path)
    return sorted(jobs, key=lambda p: int(p.name)), refused


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
    if refused := refused_links(sweep_dir):
        hint += f"; {len(refused)} numbered link(s) left out, first: {refused[0]}"
    raise FtlabError(f"{sweep_dir}: no job directories in it; {SWEEP_HELP}{hint}")


def _is_sweep(path: Path) -> bool:
    try:
        return bool(job_dirs(path))
    except OSError:
        return False


class Unreadable(Exception):
    """A job file the report cannot read: its message names the file and what is wrong with it."""


def read_record(path: Path) -> dict[str, Any]:
    """A job's JSON record (``metrics.json``, ``pruned.json``, ``failure.json``) as a dict; ``Unreadable`` naming
    the file if it is not valid JSON or not an object (a disk filled up, a copy cut short, an editor)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise Unreadable(f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from err
    except UnicodeDecodeError as err:
        raise Unreadable(f"{path}: not UTF-8 text (byte {err.start})") from err
    except OSError as err:
        raise Unreadable(f"{path}: {err.strerror or err}") from err
    if not isinstance(value, dict):
        raise Unreadable(f"{path}: not a JSON object (a {type(value).__name__})")
    return value


def collect(sweep_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per job directory: swept values, status (completed / pruned / failed / running / unreadable),
    metrics, and what the job trained on (``setup``, ``data_seen``: see ``ftlab.sweeps.comparable``).

    A job whose record cannot be read is a row with status ``unreadable`` and the file and problem as its reason:
    one broken file must not hide the rest of the sweep."""
    jobs = job_dirs(sweep_dir)
    keys = swept_keys(sweep_dir, jobs)
    rows = []
    for job in jobs:
        overrides = [o for o in saved_yaml(job / ".hydra" / "overrides.yaml", []) if isinstance(o, str)]
        config = saved_yaml(job / ".hydra" / "config.yaml", {})
        row: dict[str, Any] = {"job": int(job.name), "overrides": job_label(overrides, keys) or ",".join(overrides)}
        for key in keys:
            row[key] = next((override_value(o) for o in overrides if override_key(o) == key), None)
        row["strategy_name"] = (config.get("strategy") or {}).get("name")
        row["seed_value"] = config.get("seed")  # what the job ran with, swept or not: jobs pair on it
        row["lr_grid"] = (config.get("strategy") or {}).get("lr_grid")  # the method's own grid, if its config has one
        row.update(setup=setup_of(config), global_choices=global_choices(config, row, keys))
        try:
            rows.append({**row, **_results(job, config, row["strategy_name"])})
        except Unreadable as err:
            rows.append({**row, "status": "unreadable", "reason": str(err)})
    return rows, keys


def _results(job: Path, config: dict[str, Any], strategy_name: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"strategy_name": strategy_name}
    if (job / "curve.csv").exists():  # also for running and failed jobs: how far they got
        row["curve"] = read_curve(job / "curve.csv")
    if (job / "metrics.json").exists():
        metrics = read_record(job / "metrics.json")
        monitor = str(metrics.get("monitor", config.get("monitor", "val/acc")))
        row["strategy_name"] = metrics.get("strategy_label", row["strategy_name"])  # lora(r=8), ia3, partial
        fraction = metrics.get("params/trainable_fraction")
        row.update(status="completed", reason="", monitor=monitor, best_val=metrics.get(monitor),
                   lr_value=metrics.get("lr"),  # what the optimizer trained with
                   trainable_pct=100 * fraction if is_number(fraction) else float("nan"),
                   train_time_s=metrics.get("train_time_s"), samples_per_s=metrics.get("train_samples_per_s"),
                   peak_memory_mb=metrics.get("peak_memory_mb"),
                   data_seen={k: metrics[k] for k in DATA_IDENTITY if metrics.get(k) is not None})
        row.update({k: v for k, v in metrics.items()
                    if k.startswith(("test/", "before/test/", "retention/", "deploy/"))  # deploy/: int8 vs fp32
                    and isinstance(v, (int, float))})  # bools too: deploy/int8_within_tolerance
        if isinstance(metrics.get("test/auroc_per_class"), dict):
            row["auroc_per_class"] = metrics["test/auroc_per_class"]
        row.update(_test_evidence(metrics))
    elif (job / "pruned.json").exists():  # a search trial stopped by its pruner: no test result
        pruned = read_record(job / "pruned.json")
        monitor = str(config.get("monitor", "val/acc"))
        row.update(status="pruned", reason=f"pruned at step {pruned.get('step')} ({monitor}="
                                           f"{pruned.get(monitor)})", train_time_s=pruned.get("train_time_s"))
    elif (job / "failure.json").exists():
        row.update(status="failed", reason=str(read_record(job / "failure.json").get("reason", "")))
    else:
        row.update(status="running", reason="no metrics.json yet (running or interrupted)")
    return row


def _test_evidence(metrics: dict[str, Any]) -> dict[str, Any]:
    """How many test examples the job scored (``data/test_examples``; older jobs: the confusion matrix's total),
    the test split's size, and the test labels' class shares (from the confusion matrix's rows)."""
    out: dict[str, Any] = {}
    matrix = (metrics.get("test/confusion_matrix") or {}).get("matrix") if isinstance(
        metrics.get("test/confusion_matrix"), dict) else None
    rows = [sum(r) for r in matrix] if isinstance(matrix, list) and all(
        isinstance(r, list) and all(is_number(v) for v in r) for r in matrix) else None
    if is_number(metrics.get("data/test_examples")):
        out["test_examples"] = metrics["data/test_examples"]
    elif rows:
        out["test_examples"] = sum(rows)
    sizes = metrics.get("data/split_sizes")
    if isinstance(sizes, dict) and is_number(sizes.get("test")):
        out["test_split"] = sizes["test"]
    if rows and sum(rows) > 0:
        out["test_class_shares"] = [r / sum(rows) for r in rows]
    return out


def unreadable(rows: list[dict[str, Any]]) -> list[str]:
    """One line per job whose files cannot be read (the file and the problem; the job is listed, not ranked); an
    ``FtlabError`` when no job is readable, since a report of nothing would look like an empty sweep."""
    lines = [f"{r['reason']}; job {r['job']} is listed as unreadable and not ranked" for r in rows
             if r["status"] == "unreadable"]
    if rows and len(lines) == len(rows):
        raise FtlabError(f"every job's record is unreadable ({len(rows)} job(s)), so there is nothing to report; "
                         f"first: {rows[0]['reason']}")
    return lines


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
    """A job's ``curve.csv`` as numbers (empty cells: None); ``Unreadable`` naming the file if a cell is not one."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [{k: float(v) if v not in ("", None) else None for k, v in row.items() if k is not None}
                    for row in csv.DictReader(f)]
    except (ValueError, TypeError, csv.Error) as err:  # UnicodeDecodeError is a ValueError
        raise Unreadable(f"{path}: not a table of numbers ({err})") from err
    except OSError as err:
        raise Unreadable(f"{path}: {err.strerror or err}") from err
