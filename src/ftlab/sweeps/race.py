"""A comparison that races to a decision (``hparams_search=compare``): every method over its own learning-rate grid
first, then more seeds for the methods still racing, each at the learning rate validation chose for it, dropping
those that are clearly worse, until the answer is decided or the budget is spent.

Round 0 runs each method (a strategy with its options) at every learning rate of its ``strategy.lr_grid``, one seed
(the config's). Each later round gives every method still racing ``seeds_per_round`` more seeds at its chosen rate.
After it, a paired bootstrap over the seeds they share (``ftlab.sweeps.probability``, on the monitored validation
metric: validation chooses, the test split only reports) gives each method the probability that it is within
``tolerance`` of the best. A method whose probability falls below ``1 - confidence`` leaves the race: with that
confidence it is more than the tolerance behind. The race is decided when one method is left, or when every method
left is within the tolerance with that confidence (the cheapest of them is then the answer). It also stops when the
next round would pass ``budget_jobs``, when ``budget_s`` of training is spent, or at ``max_seeds``.

Resources grow by seeds, not steps: every job trains the same steps, so the sweep report compares all of them as
one sweep. The job directories are the race's record: the same command replays every decision from the jobs that
finished and launches only what is missing (an interrupted job resumes from its last checkpoint), so an interrupted
race continues where it stopped, also under the SLURM launcher. ``race.json`` holds what was decided and why.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ftlab.core.atomic_files import atomic_write
from ftlab.core.checks import ConfigError, is_int, is_number
from ftlab.core.metric_names import lower_is_better
from ftlab.sweeps.configurations import Config
from ftlab.sweeps.probability import bootstrap, tolerance_amount
from ftlab.sweeps.sweep_dir import Unreadable, job_dirs, read_record
from ftlab.tracking.identity import saved_yaml

log = logging.getLogger(__name__)

RECORD = "race.json"


@dataclass
class Entrant:
    """One method in the race and how it fares."""

    spec: str  # as given: "lora", or overrides such as "strategy=partial strategy.trainable_layers=2"
    overrides: list[str]
    grid: list[float]
    lr: float | None = None  # chosen on validation in round 0
    out: str | None = None  # why it left the race; None while racing
    within: float | None = None  # probability of being within the tolerance of the best (last round)
    regret: float | None = None  # expected distance to the best, metric units (last round)
    val: dict[int, float] = field(default_factory=dict)  # seed -> validation metric at the chosen lr
    train_time_s: dict[int, float] = field(default_factory=dict)


def method_overrides(spec: str) -> list[str]:
    """``lora`` -> ``[strategy=lora]``; a spec of overrides is split on white space."""
    return [part if "=" in part else f"strategy={part}" for part in str(spec).split()]


def check_settings(methods: Any, budget_jobs: Any, budget_s: Any, seeds_per_round: Any, max_seeds: Any,
                   tolerance: Any, confidence: Any) -> None:
    """Refuse a race that cannot run as asked, naming each bad ``hydra.sweeper`` key, before any job starts."""
    problems = []
    if not isinstance(methods, Sequence) or isinstance(methods, str) or len(methods) < 2:
        problems.append(f"hydra.sweeper.methods={methods!r}: give at least two methods to compare, e.g. [full, lora]")
    elif len({str(m) for m in methods}) != len(methods):
        problems.append(f"hydra.sweeper.methods={list(methods)}: a method is given twice")
    for key, value in (("budget_jobs", budget_jobs), ("seeds_per_round", seeds_per_round), ("max_seeds", max_seeds)):
        if (value is not None or key != "budget_jobs") and not (is_int(value) and value > 0):
            problems.append(f"hydra.sweeper.{key}={value!r}: must be a positive integer")
    if budget_s is not None and not (is_number(budget_s) and budget_s > 0):
        problems.append(f"hydra.sweeper.budget_s={budget_s!r}: must be a positive number of seconds (or null)")
    if budget_jobs is None and budget_s is None:
        problems.append("hydra.sweeper.budget_jobs / budget_s: give a budget (jobs, or seconds of training)")
    if not (is_number(tolerance) and tolerance >= 0):
        problems.append(f"hydra.sweeper.tolerance={tolerance!r}: must be a number >= 0 (points of a fraction metric, "
                        "else percent)")
    if not (is_number(confidence) and 0.5 <= confidence < 1):
        problems.append(f"hydra.sweeper.confidence={confidence!r}: must be in [0.5, 1), e.g. 0.9")
    if problems:
        raise ConfigError(problems)


class Race:
    """The race over ``entrants`` in ``sweep_dir``; ``launch(batch, first_number)`` runs Hydra jobs."""

    def __init__(self, entrants: list[Entrant], fixed: list[str], sweep_dir: Path, monitor: str, base_seed: int,
                 settings: dict[str, Any], definition: dict[str, Any] | None = None):
        self.entrants, self.fixed, self.sweep_dir = entrants, fixed, Path(sweep_dir)
        self.monitor, self.base_seed, self.s = monitor, base_seed, settings
        self.definition = definition  # what a continued race must share (ftlab.sweeps.race_setup)
        self.tol = tolerance_amount(monitor, settings["tolerance"], 1.0)[1]  # in words: "1 point(s)", "2%"
        self.rounds: list[dict[str, Any]] = []
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        self.jobs = self._existing()  # job overrides -> (number, record or None)
        self.stopped = ""

    # -- jobs ----------------------------------------------------------------------------------------------------
    def _existing(self) -> dict[frozenset, tuple[int, dict | None]]:
        found = {}
        for job in job_dirs(self.sweep_dir):
            key = frozenset(o for o in saved_yaml(job / ".hydra" / "overrides.yaml", []) if isinstance(o, str))
            found[key] = (int(job.name), self._record(job))
        return found

    @staticmethod
    def _record(job: Path) -> dict | None:
        """A finished job's metrics (``{}`` for a failed one); None while it has not finished."""
        try:
            if (job / "metrics.json").is_file():
                return read_record(job / "metrics.json")
        except Unreadable:
            return {}
        return {} if (job / "failure.json").is_file() else None

    def _unfinished(self, overrides: list[str]) -> bool:
        """Whether the job with these overrides has not run, or has not finished (interrupted)."""
        return self.jobs.get(frozenset(overrides), (None, None))[1] is None

    def job_overrides(self, entrant: Entrant, lr: float, seed: int) -> list[str]:
        return [*self.fixed, *entrant.overrides, f"lr={lr!r}", f"seed={seed}"]

    def run_jobs(self, launch: Callable, batch: list[list[str]]) -> list[dict]:
        """Each job's record, launching those that have not finished (an interrupted one again in its own
        directory, where it resumes); a failed job's record is ``{}``."""
        todo = [o for o in batch if self._unfinished(o)]
        fresh = [o for o in todo if frozenset(o) not in self.jobs]
        start = max((n for n, _ in self.jobs.values()), default=-1) + 1
        for i, overrides in enumerate(fresh):
            self.jobs[frozenset(overrides)] = (start + i, None)
        # Consecutive numbers per launch: Hydra names the job directories from the first one.
        for group in _consecutive(sorted(todo, key=lambda o: self.jobs[frozenset(o)][0]), self.jobs):
            launch(group, self.jobs[frozenset(group[0])][0])
        for overrides in todo:
            number = self.jobs[frozenset(overrides)][0]
            self.jobs[frozenset(overrides)] = (number, self._record(self.sweep_dir / str(number)) or {})
        return [self.jobs[frozenset(o)][1] for o in batch]

    def spent(self) -> tuple[int, float]:
        """Jobs finished and seconds of training they took."""
        done = [r for _, r in self.jobs.values() if r is not None]
        return len(done), sum(float(r.get("train_time_s") or 0.0) for r in done)

    # -- rounds --------------------------------------------------------------------------------------------------
    def run(self, launch: Callable) -> dict[str, Any]:
        """Race until decided or out of budget; returns what ``race.json`` holds."""
        self._screen(launch)
        seeds = [self.base_seed]
        while not self.stopped:
            racing = [e for e in self.entrants if e.out is None]
            if len(racing) < 2 or self._decided(racing):
                self.stopped = "decided"
                break
            new = [self.base_seed + len(seeds) + i for i in range(self.s["seeds_per_round"])]
            batch = [self.job_overrides(e, e.lr, s) for e in racing for s in new]
            if (why := self._over_budget(batch, len(seeds) + len(new))) is not None:
                self.stopped = why
                break
            for (e, seed), record in zip([(e, s) for e in racing for s in new], self.run_jobs(launch, batch)):
                self._score(e, seed, record)
            seeds += new
            self._judge(racing, len(self.rounds), len(batch))
        return self.write()

    def _screen(self, launch: Callable) -> None:
        """Round 0: each method over its grid at the base seed; its learning rate chosen on validation."""
        plan = [(e, lr) for e in self.entrants for lr in e.grid]
        batch = [self.job_overrides(e, lr, self.base_seed) for e, lr in plan]
        sign = -1 if lower_is_better(self.monitor) else 1
        best: dict[str, tuple[float, float, dict]] = {}
        for (e, lr), record in zip(plan, self.run_jobs(launch, batch)):
            value = record.get(self.monitor)
            if is_number(value) and (e.spec not in best or sign * value > sign * best[e.spec][1]):
                best[e.spec] = (lr, value, record)
        for e in self.entrants:
            if e.spec not in best:
                e.out = "round 0: no job at any learning rate of its grid finished"
                continue
            e.lr, _, record = best[e.spec]
            self._score(e, self.base_seed, record)
        self.rounds.append({"round": 0, "jobs": len(batch), "chosen_lr": {e.spec: e.lr for e in self.entrants}})
        log.info("race round 0: %d jobs; learning rates chosen on %s: %s", len(batch), self.monitor,
                 ", ".join(f"{e.spec} {e.lr:g}" for e in self.entrants if e.lr is not None))

    def _score(self, e: Entrant, seed: int, record: dict) -> None:
        """A finished job of ``e`` at its chosen learning rate (a failed one has no score: the seed is not shared)."""
        if is_number(record.get(self.monitor)):
            e.val[seed] = float(record[self.monitor])
            e.train_time_s[seed] = float(record.get("train_time_s") or 0.0)

    def _odds(self, racing: list[Entrant]) -> dict[str, Any] | None:
        best = max((statistics.fmean(e.val.values()) for e in racing if e.val), default=0.0,
                   key=lambda v: -v if lower_is_better(self.monitor) else v)
        amount, _ = tolerance_amount(self.monitor, self.s["tolerance"], best)
        return bootstrap([Config(e.spec, e.spec, dict(e.val)) for e in racing], self.monitor, amount)

    def _judge(self, racing: list[Entrant], number: int, jobs: int) -> None:
        """After a round: each method's odds; those clearly behind leave the race."""
        odds = self._odds(racing)
        out = []
        for e in racing:
            if odds is None or e.spec not in odds:
                continue
            e.within, e.regret = odds[e.spec].within, odds[e.spec].regret
            if e.within < 1 - self.s["confidence"]:
                e.out = (f"round {number}: within {self.tol} of the best with probability "
                         f"{e.within:.2f} < {1 - self.s['confidence']:.2f} over {odds[e.spec].seeds} seeds")
                out.append(e.spec)
        self.rounds.append({"round": number, "jobs": jobs, "out": out,
                            "within": {e.spec: e.within for e in racing}})
        log.info("race round %d: %s", number, "; ".join(
            f"{e.spec} P(within {self.tol})={e.within:.2f}" for e in racing if e.within is not None)
            + (f"; out: {', '.join(out)}" if out else ""))

    def _decided(self, racing: list[Entrant]) -> bool:
        return all(e.within is not None and e.within >= self.s["confidence"] for e in racing)

    def _over_budget(self, batch: list[list[str]], seeds: int) -> str | None:
        jobs, seconds = self.spent()
        missing = sum(1 for o in batch if self._unfinished(o))
        if seeds > self.s["max_seeds"]:
            return f"max_seeds ({self.s['max_seeds']}) reached"
        if self.s["budget_jobs"] is not None and jobs + missing > self.s["budget_jobs"]:
            return f"budget_jobs: the next round's {missing} job(s) would pass {self.s['budget_jobs']} ({jobs} run)"
        if self.s["budget_s"] is not None and seconds >= self.s["budget_s"]:
            return f"budget_s: {seconds:.0f} s of training spent (budget {self.s['budget_s']:g} s)"
        return None

    # -- the record ----------------------------------------------------------------------------------------------
    def answer(self) -> str:
        racing = [e for e in self.entrants if e.out is None]
        if not racing:
            return "no method finished a job"
        if self.stopped != "decided":
            return f"undecided ({self.stopped}): still racing: {', '.join(e.spec for e in racing)}"
        cheapest = min(racing, key=lambda e: statistics.fmean(e.train_time_s.values()) if e.train_time_s else 0.0)
        if len(racing) == 1:
            return f"{cheapest.spec} at lr={cheapest.lr:g}: every other method is clearly behind"
        return (f"{cheapest.spec} at lr={cheapest.lr:g}: the cheapest of {', '.join(e.spec for e in racing)}, all "
                f"within {self.tol} of the best with probability >= {self.s['confidence']:g}")

    def write(self) -> dict[str, Any]:
        jobs, seconds = self.spent()
        record = {"definition": self.definition, "monitor": self.monitor, "settings": self.s,
                  "answer": self.answer(), "stopped": self.stopped,
                  "jobs": jobs, "train_time_s": round(seconds, 3), "rounds": self.rounds,
                  "methods": [asdict(e) for e in self.entrants]}
        atomic_write(self.sweep_dir / RECORD, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
        log.info("race: %s (%d jobs, %.0f s of training; %s)", record["answer"], jobs, seconds,
                 self.sweep_dir / RECORD)
        return record


def _consecutive(batch: list[list[str]], jobs: dict) -> list[list[list[str]]]:
    groups: list[list[list[str]]] = []
    for overrides in batch:
        number = jobs[frozenset(overrides)][0]
        if groups and jobs[frozenset(groups[-1][-1])][0] == number - 1:
            groups[-1].append(overrides)
        else:
            groups.append([overrides])
    return groups
