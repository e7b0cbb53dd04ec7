"""``search.json``, what a search leaves in its sweep directory (every trial, the best one or the Pareto front), and the
report's section on it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftlab.core.atomic_files import atomic_write
from ftlab.sweeps.study_continuation import TRIAL_ATTR

RESULTS_FILE = "search.json"


def write_results(study, sweep_dir: Path, objectives: Sequence[str], directions: Sequence[str],
                  spent_s: float, definition: str) -> dict[str, Any]:
    """``search.json``: every trial (state, parameters, values, training seconds) and the best trial or, with several
    objectives, the Pareto front, for the report and for a reader of the sweep directory. Only the trials asked
    under ``definition`` (the digest they are marked with) compete for the best: others answered another question."""
    interrupted = set(study.user_attrs.get("interrupted", []))
    trials = [{"number": t.number, "state": t.state.name, "params": t.params, "values": t.values,
               "train_time_s": t.user_attrs.get("train_time_s"), "interrupted": t.number in interrupted,
               "definition": t.user_attrs.get(TRIAL_ATTR),
               "last_step": t.last_step, "intermediate": {str(k): v for k, v in t.intermediate_values.items()}}
              for t in study.get_trials(deepcopy=False)]
    front = best_trials([t for t in trials if t["state"] == "COMPLETE" and t["definition"] == definition],
                        directions)
    results = {"study": study.study_name, "objectives": list(objectives), "directions": list(directions),
               "front": front, "spent_s": spent_s, "trials": trials}
    atomic_write(sweep_dir / RESULTS_FILE, lambda p: p.write_text(json.dumps(results, indent=2)))
    return results


def best_trials(trials: list[dict[str, Any]], directions: Sequence[str]) -> list[int]:
    """The numbers of the trials no other beats in every objective (at least as good in all, better in one): the
    best trial(s) with one objective, the Pareto front with several."""
    signs = [1 if d == "maximize" else -1 for d in directions]

    def beats(a: list[float], b: list[float]) -> bool:
        pairs = [(s * x, s * y) for s, x, y in zip(signs, a, b)]
        return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)

    return sorted(t["number"] for t in trials if not any(beats(o["values"], t["values"]) for o in trials))


def best_line(results: dict[str, Any]) -> str | None:
    """One line on the outcome: ``best trial 3: val/acc=0.91 (lr=0.0003, strategy=partial)``, or the Pareto front
    with several objectives; None before any trial completed."""
    by_number = {t["number"]: t for t in results["trials"]}
    front = [by_number[n] for n in results["front"]]
    if not front:
        return None

    def trial(t: dict[str, Any]) -> str:
        values = ", ".join(f"{o}={_cell(v)}" for o, v in zip(results["objectives"], t["values"]))
        return f"{values} ({', '.join(f'{k}={_cell(v)}' for k, v in t['params'].items())})"

    if len(results["objectives"]) == 1:
        return f"best trial {front[0]['number']}: {trial(front[0])}"
    return "Pareto front: " + "; ".join(f"trial {t['number']}: {trial(t)}" for t in front)


def search_section(sweep_dir: Path) -> list[str]:
    """The report's lines on a search (from ``search.json``): what it optimised, how its trials ended, and the best
    trial or the Pareto front of its objectives; no lines for a sweep that was not a search."""
    path = Path(sweep_dir) / RESULTS_FILE
    if not path.exists():
        return []
    results = json.loads(path.read_text())
    objectives = [f"{o} ({d})" for o, d in zip(results["objectives"], results["directions"])]
    states = [t["state"] for t in results["trials"] if not t["interrupted"]]
    ended = ", ".join(f"{states.count(s)} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAIL") if s in states)
    interrupted = [t["number"] for t in results["trials"] if t["interrupted"]]
    lines = ["", f"## Search: Optuna study `{results['study']}`", "",
             f"Objectives: {', '.join(objectives)}. {len(states)} trials ({ended or 'none finished'}); "
             f"{results['spent_s']:.0f} s of training spent, pruned trials included."
             + (f" Interrupted and run again: trial(s) {', '.join(map(str, interrupted))}." if interrupted else ""),
             "", "Pareto front (no other trial is better in every objective):" if len(objectives) > 1
             else "Best trial:", ""]
    front = [t for t in results["trials"] if t["number"] in results["front"]]
    params = sorted({k for t in front for k in t["params"]})
    header = ["trial (job dir)", *params, *results["objectives"]]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for t in front:
        cells = [str(t["number"]), *(_cell(t["params"].get(k)) for k in params), *(_cell(v) for v in t["values"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _cell(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
