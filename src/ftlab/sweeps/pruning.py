"""A search trial's side of pruning: report each validation point to the study, stop when the pruner says so.

The search (``ftlab.sweeps.search``) launches every trial with ``search.storage``, ``search.study`` and
``search.trial``; the job reads its pruner from the study (the search stores its spec there), reports ``monitor`` at
each validation (``curve_points`` of them per job by default) with the global step, and stops training when the trial
falls behind. A pruned job writes ``pruned.json`` (where it stopped and why), never ``metrics.json``: it has no test
result.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L

from ftlab.core.checks import ConfigError
from ftlab.core.config_tree import dotted, subclass_of, walk

log = logging.getLogger(__name__)

PRUNED_FILE = "pruned.json"


def build_pruner(spec: Any, where: str):
    """The Optuna pruner a spec (``hydra.sweeper.pruner``, as the search stores it in the study) describes; NopPruner
    for none. A study may come from someone else, so every ``_target_`` in the spec must be an Optuna pruner class
    before anything is instantiated: a stored ``{_target_: shutil.copyfile, ...}`` is refused, not called."""
    import optuna
    from hydra.utils import instantiate

    if not spec:
        return optuna.pruners.NopPruner()
    bad = [(dotted(path, key), value) for path, key, value in walk({"pruner": spec}) if key == "_target_"
           and not (isinstance(value, str) and value.startswith("optuna.pruners.")  # imports nothing else
                    and subclass_of(value, "optuna.pruners.BasePruner"))]
    if not isinstance(spec, dict) or "_target_" not in spec or bad:
        key, value = bad[0] if bad else ("pruner", spec)
        raise ConfigError([f"{where}: {key}={value!r} is not an Optuna pruner, and a study's stored pruner is never "
                           "called otherwise; valid: a class in optuna.pruners (hydra.sweeper.pruner)"])
    return instantiate(spec)


class TrialPruning(L.Callback):
    """Reports ``monitor`` to the Optuna trial after every validation and stops the fit when the trial is pruned."""

    def __init__(self, storage: str, study: str, trial: int, monitor: str):
        self.storage, self.study_name, self.number, self.monitor = storage, study, trial, monitor
        self.trial = None
        self.pruned_at: dict[str, Any] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero or self.trial is not None:
            return
        import optuna

        study = optuna.load_study(study_name=self.study_name, storage=self.storage)
        if len(study.directions) > 1:
            return  # Optuna keeps no intermediate values for several objectives (and prunes none)
        spec = study.user_attrs.get("pruner")
        study.pruner = build_pruner(spec, f"search.study={self.study_name!r} in {self.storage}")
        frozen = next((t for t in study.get_trials(deepcopy=False) if t.number == self.number), None)
        if frozen is None:
            raise ValueError(f"search.trial={self.number}: study {self.study_name!r} in {self.storage} has no such "
                             f"trial")
        self.trial = optuna.trial.Trial(study, frozen._trial_id)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self.pruned_at is not None:
            return  # the validation points of fit only (not the final trainer.validate of the best checkpoint)
        prune, value = False, None
        if trainer.is_global_zero and self.trial is not None:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None:
                value = float(value)
                self.trial.report(value, trainer.global_step)
                prune = self.trial.should_prune()
        # Every rank stops together (the decision is rank 0's, from the study).
        if trainer.strategy.broadcast(prune, src=0):
            self.pruned_at = {"step": trainer.global_step, self.monitor: value}
            trainer.should_stop = True
            log.info("trial %d pruned at step %d (%s=%s)", self.number, trainer.global_step, self.monitor, value)


def trial_pruning(cfg) -> TrialPruning | None:
    """The pruning callback of a search trial (``search.trial`` set), else None."""
    search = cfg.get("search") or {}
    if search.get("trial") is None:
        return None
    return TrialPruning(str(search.storage), str(search.study), int(search.trial), str(cfg.monitor))


def write_pruned(out_dir: Path, pruning: TrialPruning, train_time_s: float) -> dict[str, Any]:
    """``pruned.json``: the step and validation value the trial was pruned at and the seconds it trained."""
    record = {"search/pruned": True, "trial": pruning.number, **(pruning.pruned_at or {}),
              "train_time_s": train_time_s}
    (out_dir / PRUNED_FILE).write_text(json.dumps(record, indent=2))
    return record
