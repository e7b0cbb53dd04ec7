"""Which of a sweep's jobs may be ranked together: the same task, model and data (what a sweep keeps fixed unless it
sweeps them), and the same data actually seen.

A sweep varies a few keys (strategy, lr, seed); everything else is the same for every job, so their results can be
compared. Two things break that without an error: a job directory from elsewhere (copied into the sweep, another
model or data), and a data file that changed while the sweep ran (the same data settings, other examples). The
report ranks the jobs of the sweep's own setup and data, and names the others in one line each instead.

Data actually seen is what ``metrics.json`` records of it: ``data/split_sizes`` (always), and ``data/fingerprint`` when
the job recorded one (a fingerprint of the data files catches a change that keeps the sizes). Each is compared only
between jobs that both recorded it: a job from before ``data/fingerprint`` existed is not set apart for lacking one.
"""

from __future__ import annotations

import json
from typing import Any

SETUP = ("task", "model", "data")  # what the jobs of one sweep share unless the sweep varies it
DATA_SHAPING = ("seed", "max_length")  # also shape the prepared splits (seeded split, packing into blocks)
# Settings that change where or how fast, not what is trained on: left out of a job's setup here and of a search's
# definition (ftlab.sweeps.study_continuation), the one list of them.
NOT_SETUP = ("data.num_workers", "data.cache_dir", "model.gradient_checkpointing", "model.compile")
DATA_IDENTITY = ("data/split_sizes", "data/fingerprint")  # the keys of metrics.json that describe the data seen


def setup_of(config: dict[str, Any]) -> dict[str, Any]:
    """A job's setup from its saved config as written (interpolations stay text, never resolved): the dotted keys of
    ``task``, ``model`` and ``data``, and the settings that also shape the prepared data."""
    flat: dict[str, Any] = {}
    _flatten({k: config.get(k) for k in (*SETUP, *DATA_SHAPING) if k in config}, "", flat)
    return {k: v for k, v in flat.items() if k not in NOT_SETUP}


def global_choices(config: dict[str, Any], row: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The job's values of swept keys that its saved config does not hold: choices of a global config group
    (``experiment=``, ``debug=``), which may set the task, model or data themselves."""
    def held(key: str) -> bool:
        node: Any = config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    return {k: row.get(k) for k in keys if config and not held(k)}


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and (value or not prefix):
        for key, item in value.items():
            _flatten(item, f"{prefix}{key}.", out)
    else:
        out[prefix[:-1]] = value


def set_apart(rows: list[dict[str, Any]], keys: list[str]) -> list[str]:
    """Mark the jobs that must not be ranked with the sweep (``row["set_apart"]``, and why in its reason) and return
    one line per problem: jobs with another task, model or data setup than most of the sweep, then jobs that saw
    other data than jobs with the same data settings (a data file changed while the sweep ran)."""
    return [*_other_setups(rows, keys), *_other_data(rows)]


def _swept(path: str, keys: list[str]) -> bool:
    return any(path == k or path.startswith(k + ".") for k in keys)


def _other_setups(rows: list[dict[str, Any]], keys: list[str]) -> list[str]:
    fixed = {id(r): {k: v for k, v in r["setup"].items() if k.split(".")[0] in SETUP and not _swept(k, keys)}
             for r in rows if r.get("setup")}  # a cut-short saved config tells nothing: never set apart for it
    lines = []
    # A swept global group (experiment=a,b) may set the task, model or data itself: jobs are compared within a choice.
    for same_choices in _groups([r for r in rows if id(r) in fixed], lambda r: r.get("global_choices")):
        main, *others = _groups(same_choices, lambda r: fixed[id(r)])
        for members in others:
            ours, theirs = fixed[id(members[0])], fixed[id(main[0])]
            differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
            shown = ", ".join(f"{k}={ours.get(k)} (the sweep: {theirs.get(k)})" for k in differ[:3])
            more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
            _mark(members, "another task, model or data than the sweep")
            lines.append(f"{_jobs(members)}: {shown}{more}; the sweep does not vary these, so "
                         f"{'they are' if len(members) > 1 else 'it is'} not ranked with it")
    return lines


def _other_data(rows: list[dict[str, Any]]) -> list[str]:
    seen = [r for r in rows if r.get("data_seen") and r.get("setup") and not r.get("set_apart")]
    apart, example = [], None
    for same_settings in _groups(seen, lambda r: r["setup"]):
        # Key by key, among the jobs that recorded it (and still agree on the keys before it): the most common value
        # is the sweep's, the others are set apart. A job without the key is compared on the other keys only.
        for key in DATA_IDENTITY:
            recorded = [r for r in same_settings if key in r["data_seen"] and not any(r is a for a in apart)]
            if not recorded:
                continue
            main, *others = _groups(recorded, lambda r, key=key: r["data_seen"][key])
            for members in others:
                apart += members
                example = example or (members[0], main[0])
    if not apart:
        return []
    apart = [r for r in seen if any(r is a for a in apart)]  # in the sweep's order
    _mark(apart, "saw other data than the sweep")
    odd, usual = example
    differ = [k for k in DATA_IDENTITY if k in odd["data_seen"] and k in usual["data_seen"]
              and odd["data_seen"][k] != usual["data_seen"][k]]
    shown = "; ".join(f"{k} {odd['data_seen'].get(k)} in job {odd['job']}, {usual['data_seen'].get(k)} in job "
                      f"{usual['job']}" for k in differ)
    return [f"data changed during the sweep: {_jobs(apart)} saw other data than the jobs with the same data settings "
            f"({shown}); not ranked with them: rerun them on one version of the data"]


def _groups(rows: list[dict[str, Any]], key) -> list[list[dict[str, Any]]]:
    """Rows grouped by ``key``, the largest group first (ties: the group of the earliest job)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(json.dumps(key(row), sort_keys=True, default=str), []).append(row)
    return sorted(groups.values(), key=len, reverse=True)  # stable: on a tie the group seen first stays first


def _mark(members: list[dict[str, Any]], why: str) -> None:
    for row in members:
        row["set_apart"] = why
        row["reason"] = "; ".join(filter(None, [row.get("reason"), f"not ranked: {why}"]))


def _jobs(members: list[dict[str, Any]]) -> str:
    names = [str(r["job"]) for r in members]
    return f"job{'s' if len(names) > 1 else ''} {', '.join(names)}"
