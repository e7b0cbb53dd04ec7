"""``hydra/sweeper=ftlab_compare``: Hydra's sweeper interface around ``ftlab.sweeps.race`` (``hparams_search=compare``).

Hydra only instantiates sweepers that live in the ``hydra_plugins`` namespace; this class holds no logic of its own
and imports nothing heavy, because Hydra imports every plugin module at start-up.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper


class CompareRace(Sweeper):
    """Methods raced to a decision under a budget (see ``conf/hydra/sweeper/ftlab_compare.yaml``)."""

    def __init__(self, **settings: Any):
        self.settings = settings
        self.config = self.launcher = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: list[str]) -> Any:
        from ftlab.core.checks import FtlabError
        from ftlab.sweeps.race_setup import start_race

        def compose(overrides: list[str]):
            return self.hydra_context.config_loader.load_sweep_config(self.config, overrides)

        def launch(batch: list[list[str]], first: int):
            return self.launcher.launch(batch, initial_job_idx=first)

        try:
            return start_race(self.settings, self.config, arguments, launch, compose)
        except FtlabError as err:  # one line, as run.py says a job's; Hydra would print a traceback
            sys.exit(f"ftlab: {err}")
