"""The Optuna search (hparams_search=optuna): its space, a continued study after an interruption, pruning from the
validation points, and the Pareto front of quality and cost, through the real command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ftlab.core.checks import ConfigError
from tests.helpers import ROOT, compose, tiny_overrides
from tests.sweeps.test_report import read_csv

optuna = pytest.importorskip("optuna", minversion="4.5", reason="the optuna extra is not installed")



def search_cmd(tiny_model_dir, tiny_csv, tmp_path, sweep, *extra, preset="optuna"):
    base = [o for o in tiny_overrides(tiny_model_dir, tiny_csv, tmp_path) if not o.startswith("output_dir")]
    return [sys.executable, "run.py", f"hparams_search={preset}", f"hydra.sweep.dir={sweep}", *base, *extra]


def run(cmd):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def load(sweep, name="ftlab"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep / 'study.db'}")


def test_space_from_hydra_expressions_and_the_command_line():
    from ftlab.sweeps.search import search_space, suggest

    params = {"lr": "tag(log, interval(1e-5, 1e-3))", "strategy": "choice(full, partial)", "seed": "range(1, 8, 3)"}
    space, fixed = search_space(params, ["batch_size=4", "strategy=full", "max_length=16,32"])
    assert sorted(space) == ["lr", "max_length", "seed"]  # strategy=full on the command line wins: fixed
    assert fixed == ["batch_size=4", "strategy=full"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = {key: suggest(trial, key, o) for key, o in space.items()}
        assert 1e-5 <= values["lr"] <= 1e-3 and values["seed"] in (1, 4, 7) and values["max_length"] in (16, 32)
        study.tell(trial, 0.0)
    lr = study.trials[0].distributions["lr"]
    assert lr.log and (lr.low, lr.high) == (1e-5, 1e-3)
    assert study.trials[0].distributions["seed"].step == 3


def test_settings_are_checked_with_the_key_and_the_choices():
    from ftlab.sweeps.search import check_settings

    with pytest.raises(ConfigError) as err:
        check_settings(["val/acc", "train_time_s"], ["maximize", "fastest"], {"_target_": "x"}, 0, 1, "val/acc", -1)
    text = str(err.value)
    assert "'fastest' is not a direction; valid: minimize, maximize" in text
    assert "hydra.sweeper.pruner: Optuna prunes single-objective studies only" in text
    assert "hydra.sweeper.n_trials=0" in text and "hydra.sweeper.budget_s=-1" in text
    with pytest.raises(ConfigError, match="the objective must be val/loss"):
        check_settings(["val/acc"], ["maximize"], {"_target_": "x"}, 2, 1, "val/loss", None)
    # the trial keys that the search sets come together
    cfg = compose(["hparams_search=optuna", "search.trial=3", "output_dir=/tmp/unused"])
    from ftlab.validate import validate_config
    with pytest.raises(ConfigError, match="search.storage, search.study and search.trial together; missing: "
                                          "search.storage, search.study"):
        validate_config(cfg)


@pytest.mark.slow
def test_an_interrupted_search_continues_with_the_trials_it_had(tiny_model_dir, tiny_csv, tmp_path):
    sweep = tmp_path / "search"
    cmd = search_cmd(tiny_model_dir, tiny_csv, tmp_path, sweep, "hydra.sweeper.n_trials=3", "hydra.sweeper.pruner=null",
                     "search.max_layers=2", "trainer.max_steps=3")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:  # killed (as a cluster kills a job) once trial 2 has started and trials 0 and 1 have their results
        deadline = time.time() + 300
        while not (sweep / "2" / ".hydra").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = {t.number: (t.state.name, t.params) for t in load(sweep).trials}
    assert [before[n][0] for n in sorted(before)] == ["COMPLETE", "COMPLETE", "RUNNING"]
    assert not (sweep / "2" / "metrics.json").exists()
    stamps = {n: (sweep / str(n) / "metrics.json").stat().st_mtime_ns for n in (0, 1)}

    done = run(cmd)  # the same command again
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(sweep)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]  # 3 finished: 2 kept, the interrupted one re-run
    assert study.trials[3].params == before[2][1]  # with the interrupted trial's parameters
    assert {n: (sweep / str(n) / "metrics.json").stat().st_mtime_ns for n in (0, 1)} == stamps  # not run again
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1", "2", "3"]
    results = json.loads((sweep / "search.json").read_text())
    assert [t["interrupted"] for t in results["trials"]] == [False, False, True, False]
    summary = (sweep / "summary.md").read_text()
    assert "3 trials (3 complete)" in summary and "Interrupted and run again: trial(s) 2." in summary


@pytest.mark.slow
def test_a_trial_that_falls_behind_is_pruned_at_a_validation_point(tiny_model_dir, tiny_csv, tmp_path):
    sweep = tmp_path / "search"
    sweep.mkdir()
    # Trials 0 and 1 learn (lr 3e-3); trial 2 cannot (lr 1e-9): its validation loss stays above theirs from the
    # first validation point on. The study is created first and the trials queued, as a user can.
    study = optuna.create_study(study_name="ftlab", storage=f"sqlite:///{sweep / 'study.db'}", direction="minimize")
    for lr in (3e-3, 3e-3, 1e-9):
        study.enqueue_trial({"lr": lr, "strategy": "full"})
    proc = run(search_cmd(tiny_model_dir, tiny_csv, tmp_path, sweep, "hydra.sweeper.n_trials=3", "monitor=val/loss",
                          "monitor_mode=min", "hydra.sweeper.pruner.n_startup_trials=2", "trainer.max_epochs=2",
                          "hydra.sweeper.params.lr='tag(log, interval(1e-9, 1e-2))'"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load(sweep).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    steps = sorted(trials[0].intermediate_values)
    assert len(steps) == 4  # curve_points=4 validation points per job: what the pruner judges
    pruned = json.loads((sweep / "2" / "pruned.json").read_text())
    assert pruned["step"] == steps[0] == trials[2].last_step  # stopped at its first validation point
    assert pruned["val/loss"] > max(trials[0].intermediate_values[steps[0]], trials[1].intermediate_values[steps[0]])
    assert not (sweep / "2" / "metrics.json").exists() and not (sweep / "2" / "model").exists()  # no result
    rows = {r["job"]: r for r in read_csv(sweep / "summary.csv")}
    assert rows["2"]["status"] == "pruned" and rows["2"]["reason"].startswith(f"pruned at step {steps[0]} (val/loss=")
    assert "3 jobs (2 completed, 1 pruned, 0 failed, 0 running)" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_quality_and_cost_give_a_pareto_front(tiny_model_dir, tiny_csv, tmp_path):
    sweep = tmp_path / "search"
    # val/loss: a continuous quality, so that trials trade it against time (accuracy ties on this tiny data)
    proc = run(search_cmd(tiny_model_dir, tiny_csv, tmp_path, sweep, "hydra.sweeper.n_trials=4", "search.max_layers=2",
                          "trainer.max_steps=3", "hydra.sweeper.params.lr='tag(log, interval(1e-3, 1e-2))'",
                          "monitor=val/loss", "monitor_mode=min", preset="optuna_cost"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((sweep / "search.json").read_text())
    assert results["objectives"] == ["val/loss", "train_time_s"] and results["directions"] == ["minimize", "minimize"]
    values = {t["number"]: t["values"] for t in results["trials"] if t["state"] == "COMPLETE"}
    assert len(values) == 4

    def dominated(a, b):  # b is at least as good in both (lower) and better in one
        return b[0] <= a[0] and b[1] <= a[1] and (b[0] < a[0] or b[1] < a[1])

    front = [n for n, v in values.items() if not any(dominated(v, w) for m, w in values.items() if m != n)]
    assert results["front"] == sorted(front)
    for n in front:  # the job's own metrics are what the study holds
        metrics = json.loads((sweep / str(n) / "metrics.json").read_text())
        assert values[n] == [pytest.approx(metrics["val/loss"]), pytest.approx(metrics["train_time_s"])]
    summary = (sweep / "summary.md").read_text()
    assert "## Search: Optuna study `ftlab-cost`" in summary and "Pareto front (no other trial" in summary


@pytest.mark.slow
def test_the_search_stops_when_its_training_budget_is_spent(tiny_model_dir, tiny_csv, tmp_path):
    sweep = tmp_path / "search"
    proc = run(search_cmd(tiny_model_dir, tiny_csv, tmp_path, sweep, "hydra.sweeper.n_trials=3",
                          "hydra.sweeper.budget_s=1e-6", "hydra.sweeper.pruner=null", "trainer.max_steps=2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((sweep / "search.json").read_text())
    assert [t["state"] for t in results["trials"]] == ["COMPLETE"]  # the first trial spent the budget
    assert results["spent_s"] == pytest.approx(results["trials"][0]["train_time_s"]) and results["spent_s"] > 0
