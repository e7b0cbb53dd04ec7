"""A trial's pruner comes from the study, which may come from someone else: only Optuna pruners are built from it."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest

from ftlab.core.checks import ConfigError
from ftlab.sweeps.pruning import TrialPruning, build_pruner


def study_with_pruner(tmp_path, spec) -> tuple[str, int]:
    """A study in a SQLite file holding ``spec`` as its stored pruner, and one trial waiting to run."""
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    study.set_user_attr("pruner", spec)
    return storage, study.ask().number


def test_a_stored_pruner_that_names_a_function_is_refused_before_it_runs(tmp_path):
    source, copied = tmp_path / "source", tmp_path / "copied"
    source.write_text("secret")
    storage, trial = study_with_pruner(tmp_path, {"_target_": "shutil.copyfile", "src": str(source),
                                                  "dst": str(copied)})
    callback = TrialPruning(storage, "s", trial, "val/acc")
    with pytest.raises(ConfigError) as exc:
        callback.setup(SimpleNamespace(is_global_zero=True), None, "fit")
    assert str(exc.value) == (f"search.study='s' in {storage}: pruner._target_='shutil.copyfile' is not an Optuna "
                              "pruner, and a study's stored pruner is never called otherwise; valid: a class in "
                              "optuna.pruners (hydra.sweeper.pruner)")
    assert not copied.exists()


def test_a_stored_optuna_pruner_is_built_with_its_arguments(tmp_path):
    storage, trial = study_with_pruner(tmp_path, {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 7})
    callback = TrialPruning(storage, "s", trial, "val/acc")
    callback.setup(SimpleNamespace(is_global_zero=True), None, "fit")
    assert isinstance(callback.trial.study.pruner, optuna.pruners.MedianPruner)
    assert callback.trial.study.pruner._n_startup_trials == 7 and callback.trial.number == trial


@pytest.mark.parametrize("spec, key", [
    ({"_target_": "optuna.pruners.PatientPruner", "patience": 1, "wrapped_pruner": {"_target_": "os.system"}},
     "pruner.wrapped_pruner._target_='os.system'"),
    ({"_target_": "optuna.samplers.TPESampler"}, "pruner._target_='optuna.samplers.TPESampler'"),
    ({"_target_": "optuna.pruners.no_such_module.X"}, "pruner._target_='optuna.pruners.no_such_module.X'"),
    ({"n_startup_trials": 2}, "pruner={'n_startup_trials': 2}"),
    ("os.system", "pruner='os.system'"),
])
def test_only_optuna_pruner_classes_are_built(spec, key):
    with pytest.raises(ConfigError, match="^where: " + key.replace("[", r"\[").replace("(", r"\(") + " is not an"):
        build_pruner(spec, "where")
    assert isinstance(build_pruner(None, "where"), optuna.pruners.NopPruner)
