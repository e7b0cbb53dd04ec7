"""ftlab: Hydra + Lightning experiments for full vs partial fine-tuning of transformers."""

import os
import sys

from ftlab.core.metric_names import register_resolvers

__version__ = "0.1.0"

register_resolvers()  # the configs derive monitor_mode from monitor; every process that reads them imports ftlab

# DeepSpeed, imported by Lightning and transformers whenever it is installed, warns in every process of a machine
# without a GPU that it "was unable to detect" one. With no NVIDIA device there is nothing to detect; an explicit
# DS_ACCELERATOR is kept.
if sys.platform.startswith("linux") and not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
