"""What a race (``ftlab.sweeps.race``) starts from: its methods with their learning-rate grids, the overrides every
job shares, and the check that a continued race is the same race."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from ftlab.core.checks import ConfigError, is_number
from ftlab.sweeps.race import RECORD, Entrant, Race, check_settings, method_overrides
from ftlab.validate import validate_config

RACED = ("strategy", "lr", "seed")  # the keys the race sets itself
LIMITS = ("budget_jobs", "budget_s", "seeds_per_round", "max_seeds", "tolerance", "confidence")  # what Race reads
OPTIONS = ("name", "methods", *LIMITS)


def fixed_overrides(arguments: list[str]) -> list[str]:
    """The command line's overrides, passed to every job; a sweep, or a key the race sets, is refused."""
    problems, fixed = [], []
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        key = override.get_key_element().lstrip("+~")
        if key.split(".", 1)[0] in RACED:
            problems.append(f"{override.input_line}: the race sets {key.split('.', 1)[0]} itself; give a method's "
                            "options in hydra.sweeper.methods, e.g. 'strategy=partial strategy.trainable_layers=2'")
        elif override.is_sweep_override():
            problems.append(f"{override.input_line}: the race sweeps methods, learning rates and seeds only; give "
                            "this key one value (a race per value to compare it)")
        else:
            fixed.append(override.input_line)
    if problems:
        raise ConfigError(problems)
    return fixed


def check_job(cfg: DictConfig, sweep_dir: Path) -> None:
    """``validate_config`` on a method's job config as the race would launch it (without Hydra's own node; its
    output directory in the sweep), so a setting every one of its jobs would fail on (a value, a file, what the
    model allows) is found before any starts."""
    job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    job.output_dir = str(Path(sweep_dir) / "0")
    validate_config(job)


def entrants(methods: list[str], fixed: list[str], compose: Callable[[list[str]], DictConfig],
             check: Callable[[DictConfig], None]) -> list[Entrant]:
    """Each method with its own learning-rate grid (``strategy.lr_grid`` of its composed config), its job config
    checked by ``check``."""
    found, problems = [], []
    for spec in methods:
        overrides = method_overrides(spec)
        try:
            cfg = compose([*fixed, *overrides])
        except Exception as err:  # Hydra's composition errors have no common base class
            problems.append(f"hydra.sweeper.methods: {spec!r} does not compose ({' '.join(str(err).split())[:200]})")
            continue
        try:
            check(cfg)
        except ConfigError as err:
            problems += [f"hydra.sweeper.methods: {spec!r}: {problem}" for problem in err.problems]
            continue
        grid = OmegaConf.select(cfg, "strategy.lr_grid", default=None)
        grid = OmegaConf.to_container(grid) if OmegaConf.is_config(grid) else grid
        if not (isinstance(grid, list) and grid and all(is_number(v) and v > 0 for v in grid)):
            problems.append(f"hydra.sweeper.methods: {spec!r} has no learning-rate grid (strategy.lr_grid={grid!r}); "
                            f"give one, e.g. '{spec} strategy.lr_grid=[1e-4,3e-4]'")
            continue
        found.append(Entrant(str(spec), overrides, sorted(float(v) for v in grid)))
    if problems:
        raise ConfigError(problems)
    return found


def definition(found: list[Entrant], fixed: list[str], monitor: str, base_seed: int) -> dict[str, Any]:
    """What makes a race this race: its methods, their grids, the shared overrides, the metric and the first seed.
    (Budgets, tolerance and confidence may change between runs: the decisions are replayed from the jobs.)"""
    return {"methods": [[e.spec, e.grid] for e in found], "fixed": sorted(fixed), "monitor": monitor,
            "seed": base_seed}


def check_continuation(sweep_dir: Path, defined: dict[str, Any]) -> None:
    """A race continued in ``sweep_dir`` must be the one started there: other jobs would be compared as if paired."""
    path = Path(sweep_dir) / RECORD
    if not path.is_file():
        return
    try:
        stored = json.loads(path.read_text()).get("definition")
    except (OSError, ValueError, AttributeError):
        stored = None
    if stored is not None and stored != defined:
        differs = sorted(k for k in defined if stored.get(k) != defined[k])
        raise ConfigError([f"hydra.sweep.dir={str(sweep_dir)!r}: holds a race with other {', '.join(differs)} "
                           f"({path}); continue it with its own settings, or start another race with "
                           "hydra.sweeper.name=<new name>"])


def start_race(settings: dict[str, Any], config: DictConfig, arguments: list[str], launch: Callable,
               compose: Callable[[list[str]], DictConfig],
               check: Callable[[DictConfig], None] | None = None) -> dict[str, Any]:
    """Check everything, then race in ``hydra.sweep.dir``: ``compose(overrides)`` is a job's config, ``check(cfg)``
    raises ``ConfigError`` for one that cannot run (default ``check_job``), ``launch(batch, first_job_number)`` runs
    Hydra jobs."""
    if unknown := sorted(set(settings) - set(OPTIONS)):
        raise ConfigError([f"hydra.sweeper.{key}: unknown option of the race; valid: {', '.join(OPTIONS)}"
                           for key in unknown])
    race = {k: settings.get(k) for k in LIMITS}
    check_settings(settings.get("methods"), **race)
    fixed = fixed_overrides(arguments)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    found = entrants([str(m) for m in settings["methods"]], fixed, compose,
                     check or (lambda cfg: check_job(cfg, sweep_dir)))
    first = sum(len(e.grid) for e in found)
    if race["budget_jobs"] is not None and race["budget_jobs"] < first:
        raise ConfigError([f"hydra.sweeper.budget_jobs={race['budget_jobs']}: round 0 alone runs {first} jobs (each "
                           "method over its learning-rate grid); give at least that, or smaller grids"])
    monitor, base_seed = str(config.monitor), int(config.seed)
    defined = definition(found, fixed, monitor, base_seed)
    check_continuation(sweep_dir, defined)
    return Race(found, fixed, sweep_dir, monitor, base_seed, race, defined).run(launch)
