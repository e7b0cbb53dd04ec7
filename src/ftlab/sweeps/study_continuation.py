"""Continuing an Optuna study safely: the search's definition is stored in the study, and a search with another
definition is refused instead of adding its trials to the study.

A study is found by its name (``hydra.sweeper.study_name``, ``ftlab`` by default) in its storage, so a second search
with another budget, data or space would otherwise continue the first one's study without a word: its trials would
count towards ``n_trials`` and compete for the best trial although they answer another question.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ftlab.core.checks import ConfigError, is_int
from ftlab.sweeps.comparable import NOT_SETUP  # where and how fast, not what is trained on: not part of a definition

log = logging.getLogger(__name__)

DEFINITION_ATTR = "definition"  # the study's user attribute holding the definition
TRIAL_ATTR = "definition_digest"  # each trial's user attribute: the digest of the definition it was asked under
BUDGET = ("max_epochs", "max_steps", "max_time", "limit_train_batches")  # trainer keys that bound a trial
PARTS = ("space", "fixed overrides", "objectives", "directions", "task", "model", "data", "budget")


def study_definition(config: DictConfig, space: dict[str, Any], fixed: Sequence[str], objectives: Sequence[str],
                     directions: Sequence[str]) -> dict[str, Any]:
    """What makes two searches the same search: the space, the fixed overrides, the objectives and their
    directions, and the task, model, data and training budget every trial gets. Interpolations stay as written
    (never resolved: the sweeper's config has no job yet), as JSON so that it compares equal to its stored copy."""
    plain = OmegaConf.to_container(config, resolve=False)
    trainer = plain.get("trainer") or {}
    definition = {
        "space": {key: override.input_line.split("=", 1)[-1] for key, override in sorted(space.items())},
        "fixed overrides": dict(sorted(dict(o.split("=", 1) if "=" in o else (o, None) for o in fixed).items())),
        "objectives": list(objectives), "directions": list(directions), "task": plain.get("task"),
        "model": _without_settings(plain.get("model"), "model"),
        "data": _without_settings(plain.get("data") or {}, "data"),
        "budget": {f"trainer.{key}": trainer.get(key) for key in BUDGET}}
    return json.loads(json.dumps(definition, default=str))


def _without_settings(node: Any, prefix: str) -> Any:
    """``node`` (the ``prefix`` node of the config) without the keys of ``NOT_SETUP`` under it."""
    if not isinstance(node, dict):
        return node
    return {k: _without_settings(v, f"{prefix}.{k}") for k, v in node.items() if f"{prefix}.{k}" not in NOT_SETUP}


def digest(definition: dict[str, Any]) -> str:
    """A short, stable name of a definition (what each trial is marked with)."""
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:16]


def check_continuation(study, definition: dict[str, Any], name: str, url: str) -> str:
    """Store ``definition`` in a study that has none yet, or refuse (``ConfigError``, one line) a study whose stored
    definition differs, naming the first part that differs and how to continue deliberately; returns the digest
    the search marks its trials with.

    A study with finished trials and no stored definition (made before ftlab stored one, or by hand) is adopted
    with a one-line warning: what its trials ran with cannot be checked, but refusing it would leave every search
    started before definitions were stored unable to continue. Its earlier trials count towards ``n_trials``; they
    are not marked with the digest, so only the trials asked from now on compete for the best."""
    where = f"hydra.sweeper.study_name={name!r}: the study in {url}"
    sqlite = "sqlite:///"
    how = ("to continue deliberately, give this search another hydra.sweeper.study_name, or delete "
           + (url[len(sqlite):] if url.startswith(sqlite) else
              f"the study (optuna delete-study --study-name {name} --storage {url})") + " to start it afresh")
    stored = study.user_attrs.get(DEFINITION_ATTR)
    if stored is None:
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        if finished:
            log.warning("%s has %d finished trial(s) but no stored definition (made before ftlab stored one, or by "
                        "hand): this search's definition is now stored, and its earlier trials could not be checked "
                        "against it; they count towards n_trials, but only trials asked from now on compete for the "
                        "best", where, len(finished))
        study.set_user_attr(DEFINITION_ATTR, definition)
    elif stored != definition:
        raise ConfigError([f"{where} was made by another search: {differences(stored, definition)}; continuing it "
                           f"would mix both searches' trials; {how}"])
    return digest(definition)


def differences(stored: dict[str, Any], now: dict[str, Any]) -> str:
    """The first part of two definitions that differs, key by key (at most three), and the other parts that do.
    A part outside ``PARTS`` (a definition stored by another ftlab version, or edited by hand) is named by its key."""
    others = sorted((stored.keys() | now.keys()) - set(PARTS), key=str)
    parts = [p for p in (*PARTS, *others) if stored.get(p, _NONE) != now.get(p, _NONE)]
    first, rest = parts[0], parts[1:]
    # The keys of space, fixed overrides and budget are full keys already; model's, data's and an unknown part's not.
    prefix = "" if first in PARTS and first not in ("model", "data") else str(first)
    old, new = _flat(stored.get(first, _NONE), prefix), _flat(now.get(first, _NONE), prefix)
    keys = [k for k in [*old, *(k for k in new if k not in old)] if old.get(k, _NONE) != new.get(k, _NONE)]
    shown = "; ".join(f"{k or first}: {_show(old.get(k, _NONE))} stored, {_show(new.get(k, _NONE))} now"
                      for k in keys[:3])
    if not keys:  # an empty mapping against none at all: nothing to list key by key
        shown = f"{first}: {_show(stored.get(first, _NONE))} stored, {_show(now.get(first, _NONE))} now"
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    verb = "differ" if first.endswith("s") else "differs"
    return f"its {first} {verb} ({shown}{more})" + (f"; so do its {', '.join(rest)}" if rest else "")


_NONE = object()  # a key one definition has and the other has not


def _show(value: Any) -> str:
    return "(none)" if value is _NONE else json.dumps(value)


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def sampler(spec: DictConfig | None, study):
    """The sampler of ``hydra.sweeper.sampler`` (None: Optuna's default). A seeded sampler that continues a study is
    seeded with its seed plus the number of trials the study has: the same seed would propose the finished trials'
    parameters again, and the sum keeps the continued search reproducible."""
    from hydra.utils import instantiate

    if spec is None:
        return None
    seed, trials = spec.get("seed"), len(study.get_trials(deepcopy=False))
    if trials and is_int(seed):
        return instantiate(spec, seed=seed + trials)
    return instantiate(spec)
