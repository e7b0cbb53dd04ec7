"""ftlab command line: `python run.py [overrides]`, `python run.py -m strategy=full,partial lr=1e-5,2e-5`."""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import ftlab  # noqa: F401  (light: registers the config's resolvers, e.g. monitor_mode derived from monitor)
from ftlab.core.checks import FtlabError
from ftlab.core.writable import run_dir_problem
from ftlab.training.console import route_library_output
from ftlab.training.resumed_job import resume_config
from ftlab.validate import validate_settings


def in_a_multirun() -> bool:
    """Whether this job is one of a sweep (``-m``): one bad job must not stop the sweep, so its error is raised for
    Hydra to record (the report lists it) instead of ending the process."""
    return HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict | None:
    try:
        job = resume_config(cfg)
        validate_settings(job)  # a wrong setting is reported before the imports below, which take seconds
    except FtlabError as err:
        if in_a_multirun():
            raise
        sys.exit(f"ftlab: {err}")
    # Imported here so that `--help`, `--cfg job` and a wrong setting stay fast (lightning/transformers import in
    # seconds).
    from ftlab.train import train_checked
    from ftlab.training.resume import TrainingInterrupted

    # hydra.verbose=true: the libraries' bars too; a list of logger names makes only those loggers verbose.
    route_library_output(verbose=HydraConfig.get().verbose is True)
    try:
        metrics = train_checked(job)
    except FtlabError as err:
        if in_a_multirun():
            raise
        sys.exit(f"ftlab: {err}")
    except TrainingInterrupted as err:
        sys.exit(f"ftlab: interrupted: {err}\ncontinue with: python run.py resume={cfg.output_dir}")
    if cfg.plan_only:
        return None
    return metrics  # what search sweepers read their objectives from (hparams_search=optuna)


if __name__ == "__main__":
    if problem := run_dir_problem(sys.argv[1:]):  # Hydra creates the directory before main(), with a traceback
        sys.exit(f"ftlab: {problem}")
    main()
