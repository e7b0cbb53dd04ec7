"""ftlab: Hydra + Lightning experiments for full vs partial fine-tuning of transformers."""

from ftlab.core.metric_names import register_resolvers

__version__ = "0.1.0"

register_resolvers()  # the configs derive monitor_mode from monitor; every process that reads them imports ftlab
