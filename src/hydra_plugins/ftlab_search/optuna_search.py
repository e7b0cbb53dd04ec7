"""``hydra/sweeper=ftlab_optuna``: Hydra's sweeper interface around ``ftlab.sweeps.search.Search``.

Hydra only instantiates sweepers that live in the ``hydra_plugins`` namespace; this class holds no logic of its own
and imports nothing heavy, because Hydra imports every plugin module at start-up.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper


class OptunaSearch(Sweeper):
    """Resumable Optuna search with pruning and several objectives (see ``conf/hydra/sweeper/ftlab_optuna.yaml``)."""

    def __init__(self, **settings: Any):
        self.settings = settings
        self.config = self.launcher = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: list[str]) -> Any:
        from ftlab.core.checks import FtlabError
        from ftlab.sweeps.search import Search

        try:
            return Search(**self.settings).run(self.config, self.launcher, arguments)
        except FtlabError as err:  # one line, as run.py says a job's; Hydra would print a traceback
            sys.exit(f"ftlab: {err}")
