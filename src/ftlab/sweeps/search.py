"""A resumable, budget-aware Optuna search behind Hydra's sweeper interface (``hparams_search=optuna``).

The study lives in a persistent storage (by default ``study.db`` in the sweep directory), so running the same command
again continues it: finished trials are kept and counted, a trial that an interruption left running is re-run with
the same parameters. Each trial is one Hydra job; the job reports its validation points to the study and stops when
the pruner says so (``ftlab.sweeps.pruning``). With several objectives (quality and cost) the search returns the
Pareto front. Everything the search decided is written to ``search.json`` in the sweep directory for the report.

Optuna itself is used directly: hydra-optuna-sweeper pins Optuna 2, whose SQL storage breaks on SQLAlchemy 2, and it
has no pruning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from ftlab.core.checks import ConfigError, is_int, is_number
from ftlab.sweeps.pruning import build_pruner
from ftlab.sweeps.search_results import best_line, write_results
from ftlab.sweeps.study_continuation import TRIAL_ATTR, check_continuation, sampler, study_definition

log = logging.getLogger(__name__)

DIRECTIONS = ("minimize", "maximize")
STUDY_FILE = "study.db"
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def check_settings(objectives: Sequence[str], directions: Sequence[str], pruner: Any, n_trials: Any, n_jobs: Any,
                   monitor: str, budget_s: Any) -> None:
    """Refuse a search that cannot run as asked, naming each bad ``hydra.sweeper`` key, before any trial starts."""
    problems = []
    if not objectives or len(objectives) != len(directions):
        problems.append(f"hydra.sweeper.objectives={list(objectives)} / directions={list(directions)}: give one "
                        f"direction per objective")
    for d in directions:
        if d not in DIRECTIONS:
            problems.append(f"hydra.sweeper.directions: {d!r} is not a direction; valid: {', '.join(DIRECTIONS)}")
    if pruner is not None and len(objectives) > 1:
        problems.append("hydra.sweeper.pruner: Optuna prunes single-objective studies only; set "
                        "hydra.sweeper.pruner=null for a multi-objective search")
    if pruner is not None and objectives and objectives[0] != monitor:
        problems.append(f"hydra.sweeper.objectives={list(objectives)}: the pruner judges the validation points of "
                        f"monitor={monitor}, so the objective must be {monitor}")
    for key, value in (("n_trials", n_trials), ("n_jobs", n_jobs)):
        if not is_int(value) or value < 1:
            problems.append(f"hydra.sweeper.{key}={value!r}: must be a positive integer")
    if budget_s is not None and not (isinstance(budget_s, (int, float)) and budget_s > 0):
        problems.append(f"hydra.sweeper.budget_s={budget_s!r}: must be a positive number of seconds (or null)")
    if problems:
        raise ConfigError(problems)


def storage_url(storage: str | None, sweep_dir: str | Path) -> str:
    """The study's storage URL with an absolute path, so every job (also on another node) finds the same file."""
    if storage is None:
        return f"sqlite:///{(Path(sweep_dir) / STUDY_FILE).absolute()}"
    prefix = "sqlite:///"
    if storage.startswith(prefix) and not storage[len(prefix):].startswith("/"):
        return prefix + str(Path(storage[len(prefix):]).absolute())
    return storage


def search_space(params: dict[str, Any], arguments: list[str]) -> tuple[dict[str, Override], list[str]]:
    """The searched keys (``choice``, ``range``, ``interval``, comma lists; from ``params`` and the command line, the
    command line winning) and the fixed overrides passed to every trial unchanged."""
    parser = OverridesParser.create()
    space: dict[str, Override] = {}
    fixed: list[str] = []
    from_config = [f"{key}={value}" for key, value in (params or {}).items()]
    for override in parser.parse_overrides(from_config + list(arguments)):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = override
        else:
            space.pop(key, None)
            fixed.append(override.input_line)
    return space, fixed


def suggest(trial, key: str, override: Override) -> Any:
    """Sample ``key`` from its Hydra sweep expression with the trial's sampler."""
    sweep = override.value()
    log_scale = "log" in sweep.tags
    if isinstance(sweep, IntervalSweep):
        if "int" in sweep.tags:
            return trial.suggest_int(key, int(sweep.start), int(sweep.end), log=log_scale)
        return trial.suggest_float(key, float(sweep.start), float(sweep.end), log=log_scale)
    if isinstance(sweep, RangeSweep) and all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)):
        last = sweep.stop - 1 - (sweep.stop - 1 - sweep.start) % sweep.step
        return trial.suggest_int(key, sweep.start, last, step=sweep.step, log=log_scale)
    if isinstance(sweep, (ChoiceSweep, RangeSweep)):
        return trial.suggest_categorical(key, list(override.sweep_iterator()))
    raise ConfigError([f"{key}={override.input_line}: not a sweep the search can sample; use choice(...), "
                       f"range(...), interval(...) or a comma list"])


def _override(key: str, value: Any) -> str:
    return f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}"


def finished_trials(study) -> list:
    """Trials that count towards ``n_trials``: completed, pruned, or failed by their own job (not by an
    interruption)."""
    interrupted = set(study.user_attrs.get("interrupted", []))
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED and t.number not in interrupted]


def spent_seconds(study) -> float:
    """Training seconds the finished trials spent, pruned ones included (what the budget counts)."""
    return sum(t.user_attrs.get("train_time_s", 0.0) for t in finished_trials(study))


def requeue_interrupted(study) -> int:
    """Trials an interrupted search left running: marked failed-by-interruption and queued again with the same
    parameters (their job directories keep the partial run; the new trial starts afresh)."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if stale:
        study.set_user_attr("interrupted", [*study.user_attrs.get("interrupted", []), *(t.number for t in stale)])
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, skip_if_exists=False)
    return len(stale)


def record_result(study, trial, ret, objectives: Sequence[str]) -> None:
    """Tell the study how a trial's job ended: its objective values, pruned (with the time it used), or failed."""
    from optuna.trial import TrialState

    try:
        metrics = ret.return_value or {}  # re-raises the job's exception if it failed
    except Exception as err:  # one failed trial must not stop the search: the study records it
        log.warning("trial %d failed: %s: %s", trial.number, type(err).__name__, err)
        study.tell(trial, state=TrialState.FAIL)
        return
    trial.set_user_attr("train_time_s", float(metrics.get("train_time_s") or 0.0))
    if metrics.get("search/pruned"):
        study.tell(trial, state=TrialState.PRUNED)
        return
    missing = [name for name in objectives if not isinstance(metrics.get(name), (int, float))]
    if missing:
        numeric = sorted(k for k, v in metrics.items() if is_number(v))
        raise ConfigError([f"hydra.sweeper.objectives: {', '.join(missing)} is not in the job's metrics; valid: "
                           f"{', '.join(numeric)}"])
    values = [float(metrics[name]) for name in objectives]
    if not all(math.isfinite(v) for v in values):
        study.tell(trial, state=TrialState.FAIL)
        return
    study.tell(trial, values)


class Search:
    """The search loop (Hydra's ``Sweeper`` in ``hydra_plugins.ftlab_search`` delegates to it)."""

    def __init__(self, study_name: str, storage: str | None, n_trials: int, n_jobs: int, objectives: list[str],
                 directions: list[str], sampler: Any, pruner: Any, params: dict | None,
                 custom_search_space: str | None, budget_s: float | None):
        self.settings = dict(study_name=study_name, storage=storage, n_trials=n_trials, n_jobs=n_jobs,
                             objectives=list(objectives), directions=list(directions), sampler=sampler,
                             pruner=pruner, params=params, custom_search_space=custom_search_space, budget_s=budget_s)

    def run(self, config: DictConfig, launcher, arguments: list[str]) -> dict[str, Any]:
        """Ask, launch and tell until ``n_trials`` trials have finished (or the budget is spent); returns the
        results also written to ``search.json``."""
        import optuna

        s = self.settings
        check_settings(s["objectives"], s["directions"], s["pruner"], s["n_trials"], s["n_jobs"],
                       str(config.get("monitor")), s["budget_s"])
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        url = storage_url(s["storage"], sweep_dir)
        pruner_spec = OmegaConf.to_container(s["pruner"], resolve=True) if s["pruner"] is not None else None
        study = optuna.create_study(storage=url, study_name=s["study_name"], load_if_exists=True,
                                    directions=s["directions"], pruner=build_pruner(pruner_spec, "hydra.sweeper"))
        stored = [d.name.lower() for d in study.directions]
        if stored != list(s["directions"]):
            raise ConfigError([f"hydra.sweeper.directions={list(s['directions'])}: study {s['study_name']!r} in "
                               f"{url} was created with {stored}; use another hydra.sweeper.study_name"])
        space, fixed = search_space(s["params"], arguments)
        definition = study_definition(config, space, fixed, s["objectives"], s["directions"])
        marked = check_continuation(study, definition, s["study_name"], url)
        study.sampler = sampler(s["sampler"], study) or study.sampler  # seeded from how many trials the study has
        study.set_user_attr("pruner", pruner_spec)  # the trials' jobs build the same pruner from it
        if requeued := requeue_interrupted(study):
            log.info("continuing study %s: %d interrupted trial(s) queued again", s["study_name"], requeued)
        custom = get_method(s["custom_search_space"]) if s["custom_search_space"] else None
        while (left := s["n_trials"] - len(finished_trials(study))) > 0:
            if s["budget_s"] is not None and spent_seconds(study) >= s["budget_s"]:
                log.info("search budget of %.0f s spent; stopping with %d trial(s) left", s["budget_s"], left)
                break
            trials = [study.ask() for _ in range(min(left, s["n_jobs"]))]
            batch = []
            for trial in trials:
                trial.set_user_attr(TRIAL_ATTR, marked)  # the best trial is chosen among this definition's only
                overrides = [_override(key, suggest(trial, key, o)) for key, o in space.items()]
                if custom is not None:
                    before = set(trial.params)
                    custom(config, trial)
                    overrides += [_override(k, v) for k, v in trial.params.items() if k not in before]
                batch.append([*fixed, *overrides, f"search.storage='{url}'", f"search.study={s['study_name']}",
                              f"search.trial={trial.number}"])
            # Job directories are named by trial number, stable across continued runs.
            numbers = [t.number for t in trials]
            if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
                raise RuntimeError(f"study {s['study_name']!r} got trials {numbers} from one ask: another search is "
                                   f"asking the same study; run one search per study (hydra.sweeper.n_jobs runs "
                                   f"trials in parallel)")
            returns = launcher.launch(batch, initial_job_idx=numbers[0])
            for trial, ret in zip(trials, returns):
                record_result(study, trial, ret, s["objectives"])
            write_results(study, sweep_dir, s["objectives"], s["directions"], spent_seconds(study), marked)
        results = write_results(study, sweep_dir, s["objectives"], s["directions"], spent_seconds(study), marked)
        if line := best_line(results):
            log.info("%s", line)
        ended = [t.state.name for t in finished_trials(study)]
        if ended and "COMPLETE" not in ended and "PRUNED" not in ended:
            raise RuntimeError(f"all {len(ended)} trials of study {s['study_name']!r} failed; their job directories in "
                               f"{sweep_dir} hold failure.json and run.log")
        return results

