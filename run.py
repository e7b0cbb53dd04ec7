"""ftlab command line: `python run.py [overrides]`, `python run.py -m strategy=full,partial lr=1e-5,2e-5`."""

import sys

import hydra
from omegaconf import DictConfig

import ftlab  # noqa: F401  (light: registers the config's resolvers, e.g. monitor_mode derived from monitor)


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict | None:
    # Imported here so `--help` and `--cfg job` stay fast (lightning/transformers import in seconds).
    from ftlab.core.checks import FtlabError
    from ftlab.train import train
    from ftlab.training.console import route_library_output
    from ftlab.training.resume import TrainingInterrupted

    route_library_output()
    try:
        metrics = train(cfg)
    except FtlabError as err:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # one bad job must not stop the sweep: Hydra records it and the report lists it
        sys.exit(f"ftlab: {err}")
    except TrainingInterrupted as err:
        sys.exit(f"ftlab: interrupted: {err}\ncontinue with: python run.py resume={cfg.output_dir}")
    if cfg.plan_only:
        return None
    return metrics  # what search sweepers read their objectives from (hparams_search=optuna)


if __name__ == "__main__":
    main()
