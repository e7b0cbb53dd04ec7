"""ftlab: Hydra + Lightning experiments for full vs partial fine-tuning of transformers."""

import logging

from ftlab.core.metric_names import register_resolvers

__version__ = "0.1.0"

register_resolvers()  # the configs derive monitor_mode from monitor; every process that reads them imports ftlab


class _NoAcceleratorGuess(logging.Filter):
    """DeepSpeed, imported by Lightning and transformers whenever it is installed, logs in every process of a machine
    without a GPU that it is "unable to detect" one and falls back to the CPU: nothing a user can act on. A filter on
    its logger (which DeepSpeed creates by name, keeping filters) drops that record alone, whatever the accelerator."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "we were unable to detect it" not in record.getMessage()


logging.getLogger("DeepSpeed").addFilter(_NoAcceleratorGuess())
