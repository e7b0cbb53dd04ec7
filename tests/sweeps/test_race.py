"""The racing comparison on synthetic sweeps with planted truths: a launcher that writes each job's directory and
metrics.json as Hydra and a finished job would, with the validation metric a function of method, learning rate and
seed. Checked: the learning rate each method gets, the order methods leave the race, the probabilities against a
computation by hand, the budget, and an interrupted race continued to the same answer."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from ftlab.core.checks import ConfigError
from ftlab.sweeps.race import Entrant, Race
from ftlab.sweeps.race_setup import start_race
from tests.helpers import ROOT, tiny_overrides

SETTINGS = {"budget_jobs": 40, "budget_s": None, "seeds_per_round": 2, "max_seeds": 7, "tolerance": 1.0,
            "confidence": 0.9}
GRID = [1e-4, 2e-4, 4e-4]
SEED_EFFECT = {42: 0.0, 43: 0.01, 44: -0.01, 45: 0.004, 46: -0.004, 47: 0.002, 48: -0.002}  # shared by all methods


def no_check(cfg) -> None:
    """These composed configs are sketches; a real job config's check is tested end to end below."""


def planted(method: str, lr: float, seed: int) -> tuple[float, float]:
    """val/acc and train time of a job. full: best at the grid's top (its best lies above the grid); equal: the
    same accuracy as full at its best, at its middle lr, in half the time; worse: 3 points behind."""
    shift = SEED_EFFECT[seed]
    if method == "full":
        return 0.80 + 0.05 * GRID.index(lr) + shift, 100.0
    if method == "equal":
        return 0.90 - 0.04 * abs(GRID.index(lr) - 1) + shift, 50.0
    return 0.87 - 0.02 * abs(GRID.index(lr) - 1) + shift, 60.0  # worse: 0.87 at best, 3 points below 0.90


class Launcher:
    """Writes what a job leaves: .hydra/overrides.yaml and metrics.json (failure.json for a job that fails)."""

    def __init__(self, sweep_dir, stop_after: int | None = None, fail: set | None = None):
        self.sweep_dir, self.stop_after, self.fail = sweep_dir, stop_after, fail or set()
        self.launched: list[list[str]] = []

    def __call__(self, batch: list[list[str]], first: int) -> None:
        for number, overrides in enumerate(batch, start=first):
            job = self.sweep_dir / str(number)
            (job / ".hydra").mkdir(parents=True, exist_ok=True)
            (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
            if self.stop_after is not None and len(self.launched) == self.stop_after:
                raise KeyboardInterrupt  # the race is stopped with this job started and unfinished
            self.launched.append(list(overrides))
            values = dict(o.split("=", 1) for o in overrides)
            method, lr, seed = values["strategy"], float(values["lr"]), int(values["seed"])
            if (method, lr) in self.fail:
                (job / "failure.json").write_text('{"status": "failed", "reason": "planted"}\n')
                continue
            acc, seconds = planted(method, lr, seed)
            (job / "metrics.json").write_text(json.dumps({"val/acc": acc, "train_time_s": seconds}))


def race(sweep_dir, launcher, methods=("full", "equal", "worse"), **settings) -> dict:
    entrants = [Entrant(m, [f"strategy={m}"], list(GRID)) for m in methods]
    return Race(entrants, ["trainer.max_epochs=1"], sweep_dir, "val/acc", 42, {**SETTINGS, **settings}).run(launcher)


def by_spec(record: dict) -> dict[str, dict]:
    return {m["spec"]: m for m in record["methods"]}


def test_each_method_at_its_own_lr_the_worse_one_out_first_and_the_cheapest_equal_one_answers(tmp_path):
    launcher = Launcher(tmp_path)
    record = race(tmp_path, launcher)
    methods = by_spec(record)
    assert {m: methods[m]["lr"] for m in methods} == {"full": 4e-4, "equal": 2e-4, "worse": 2e-4}
    # Round 0: 3 methods x 3 learning rates at seed 42; round 1: 2 more seeds each for the 3 methods.
    assert [r["round"] for r in record["rounds"]] == [0, 1] and [r["jobs"] for r in record["rounds"]] == [9, 6]
    assert record["rounds"][1]["out"] == ["worse"]
    # By hand: over seeds 42-44 full and equal score 0.90 + the same seed effect, so every resample's means are
    # equal (gap 0: within 1 point with probability 1); worse is 0.03 behind in every seed (gap 0.03 > 0.01).
    assert methods["full"]["within"] == methods["equal"]["within"] == 1.0
    assert methods["worse"]["within"] == 0.0 and methods["worse"]["regret"] == pytest.approx(0.03)
    assert methods["worse"]["out"].startswith("round 1: within 1 point(s) of the best with probability 0.00 < 0.10")
    assert record["stopped"] == "decided" and record["jobs"] == 15 == len(launcher.launched)
    assert record["answer"] == ("equal at lr=0.0002: the cheapest of full, equal, all within 1 point(s) of the best "
                                "with probability >= 0.9")
    saved = json.loads((tmp_path / "race.json").read_text())
    assert saved["answer"] == record["answer"] and saved["rounds"] == record["rounds"]
    # Every job ran the shared overrides, its method, its lr and its seed; the fixed ones unchanged.
    assert all(o[0] == "trainer.max_epochs=1" and o[-1].startswith("seed=") for o in launcher.launched)


def test_a_method_whose_jobs_all_fail_leaves_in_round_0_and_the_budget_stops_an_undecided_race(tmp_path):
    launcher = Launcher(tmp_path, fail={("worse", lr) for lr in GRID})
    record = race(tmp_path, launcher, budget_jobs=12)  # round 0 (9) fits; round 1 (2 x 2 = 4 more) would not
    methods = by_spec(record)
    assert methods["worse"]["out"] == "round 0: no job at any learning rate of its grid finished"
    assert record["stopped"] == "budget_jobs: the next round's 4 job(s) would pass 12 (9 run)"
    assert record["answer"] == "undecided (budget_jobs: the next round's 4 job(s) would pass 12 (9 run)): still " \
                               "racing: full, equal"
    assert len(launcher.launched) == 9


def test_an_interrupted_race_continues_to_the_answer_of_an_uninterrupted_one(tmp_path):
    whole = race(tmp_path / "whole", Launcher(tmp_path / "whole"))
    first = Launcher(tmp_path / "cut", stop_after=11)  # round 0 and 2 jobs of round 1 finished, the 12th started
    with pytest.raises(KeyboardInterrupt):
        race(tmp_path / "cut", first)
    second = Launcher(tmp_path / "cut")
    again = race(tmp_path / "cut", second)
    assert again["answer"] == whole["answer"] and again["rounds"] == whole["rounds"]
    # Only what had not finished ran again: the started job in its own directory, then the rest of the round.
    assert len(second.launched) == 15 - 11
    assert sorted(p.name for p in (tmp_path / "cut").iterdir() if p.name.isdigit()) == \
        sorted(p.name for p in (tmp_path / "whole").iterdir() if p.name.isdigit())


def test_a_race_is_checked_before_any_job_and_continued_only_with_its_own_definition(tmp_path):
    config = OmegaConf.create({"monitor": "val/acc", "seed": 42, "hydra": {"sweep": {"dir": str(tmp_path)}}})
    grids = {"full": [2e-4, 4e-4], "lora": [1e-4, 2e-4]}

    def compose(overrides):
        name = dict(o.split("=", 1) for o in overrides)["strategy"]
        return OmegaConf.create({"strategy": {"name": name, "lr_grid": grids.get(name)}})

    def never(batch, first):
        raise AssertionError("no job may start")

    settings = {**SETTINGS, "methods": ["full"], "tolerance": -1}
    with pytest.raises(ConfigError) as err:
        start_race(settings, config, ["lr=1e-4,2e-4", "trainer.max_epochs=1,2"], never, compose, no_check)
    assert err.value.problems == [
        "hydra.sweeper.methods=['full']: give at least two methods to compare, e.g. [full, lora]",
        "hydra.sweeper.tolerance=-1: must be a number >= 0 (points of a fraction metric, else percent)"]
    with pytest.raises(ConfigError) as err:
        start_race({**SETTINGS, "methods": ["full", "lora"]}, config, ["lr=1e-4", "trainer.max_epochs=1,2"], never,
                   compose)
    assert err.value.problems == [
        "lr=1e-4: the race sets lr itself; give a method's options in hydra.sweeper.methods, e.g. 'strategy=partial "
        "strategy.trainable_layers=2'",
        "trainer.max_epochs=1,2: the race sweeps methods, learning rates and seeds only; give this key one value (a "
        "race per value to compare it)"]
    with pytest.raises(ConfigError) as err:  # a typo is never a default silently used
        start_race({**SETTINGS, "methods": ["full", "lora"], "budget_job": 10}, config, [], never, compose, no_check)
    assert str(err.value) == ("hydra.sweeper.budget_job: unknown option of the race; valid: name, methods, "
                              "budget_jobs, budget_s, seeds_per_round, max_seeds, tolerance, confidence")
    with pytest.raises(ConfigError) as err:
        start_race({**SETTINGS, "methods": ["full", "lora"], "budget_jobs": 3}, config, [], never, compose, no_check)
    assert str(err.value) == ("hydra.sweeper.budget_jobs=3: round 0 alone runs 4 jobs (each method over its "
                              "learning-rate grid); give at least that, or smaller grids")
    with pytest.raises(ConfigError, match=r"'ia3' has no learning-rate grid \(strategy.lr_grid=None\)"):
        start_race({**SETTINGS, "methods": ["full", "ia3"]}, config, [], never, compose, no_check)

    def launch(batch, first):
        for number, overrides in enumerate(batch, start=first):
            (tmp_path / str(number) / ".hydra").mkdir(parents=True)
            (tmp_path / str(number) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
            (tmp_path / str(number) / "metrics.json").write_text('{"val/acc": 0.5, "train_time_s": 1}')

    record = start_race({**SETTINGS, "methods": ["full", "lora"], "max_seeds": 1}, config, [], launch, compose,
                        no_check)
    assert record["definition"] == {"methods": [["full", [2e-4, 4e-4]], ["lora", [1e-4, 2e-4]]], "fixed": [],
                                    "monitor": "val/acc", "seed": 42}
    assert record["stopped"] == "max_seeds (1) reached"
    grids["lora"] = [3e-4]
    with pytest.raises(ConfigError) as err:
        start_race({**SETTINGS, "methods": ["full", "lora"]}, config, [], never, compose, no_check)
    assert str(err.value) == (f"hydra.sweep.dir={str(tmp_path)!r}: holds a race with other methods "
                              f"({tmp_path / 'race.json'}); continue it with its own settings, or start another race "
                              "with hydra.sweeper.name=<new name>")


@pytest.mark.slow
def test_the_race_command_runs_real_jobs_writes_the_report_and_continues_without_rerunning(tiny_model_dir, tiny_csv,
                                                                                          tmp_path):
    """``python run.py hparams_search=compare`` end to end on the tiny model: a method its model cannot run refused
    before any job; two methods over their own grids, one more round of seeds, race.json and the sweep report; the
    same command again finds the race over and runs nothing."""
    sweep = tmp_path / "race"
    base = [o for o in tiny_overrides(tiny_model_dir, tiny_csv, tmp_path) if not o.startswith("output_dir")]
    cmd = [sys.executable, "run.py", "hparams_search=compare", f"hydra.sweep.dir={sweep}", *base,
           "hydra.sweeper.methods=[full,'head_only strategy.lr_grid=[3e-3,1e-2]']", "hydra.sweeper.max_seeds=3",
           "trainer.max_steps=3", "callbacks.early_stopping=null"]
    bad = [a.replace("'head_only strategy.lr_grid=[3e-3,1e-2]'", "'partial strategy.trainable_layers=9'") for a in cmd]
    refused = subprocess.run(bad, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1] == (
        "ftlab: hydra.sweeper.methods: 'partial strategy.trainable_layers=9': strategy.trainable_layers=9: the model "
        "has only 2 layers; valid: -2..2 (negative: bottom |k|)")
    assert not sweep.exists()  # refused before any job started
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((sweep / "race.json").read_text())
    methods = by_spec(record)
    assert methods["full"]["grid"] == [2e-4, 4e-4, 8e-4]  # conf/strategy/full.yaml's own grid
    assert methods["head_only strategy.lr_grid=[3e-3,1e-2]"]["grid"] == [3e-3, 1e-2]
    jobs = sorted(int(p.name) for p in sweep.iterdir() if p.name.isdigit())
    assert record["rounds"][0]["jobs"] == 5 and len(jobs) == record["jobs"] == 5 + sum(
        r["jobs"] for r in record["rounds"][1:])
    assert all((sweep / str(j) / "metrics.json").is_file() for j in jobs)
    assert f"race: {record['answer']}" in proc.stderr + proc.stdout
    summary = (sweep / "summary.md").read_text()
    assert "swept: strategy, lr, seed, strategy.lr_grid." in summary  # the race's keys, none on the command line
    assert f"## Race to a decision\n\n**{record['answer']}**" in summary
    assert "| head_only strategy.lr_grid=[3e-3,1e-2] | 0.003, 0.01 |" in summary
    stamps = {j: (sweep / str(j) / "metrics.json").stat().st_mtime_ns for j in jobs}
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((sweep / "race.json").read_text())["answer"] == record["answer"]
    assert {j: (sweep / str(j) / "metrics.json").stat().st_mtime_ns for j in jobs} == stamps  # nothing ran again
