"""The console's filter: quiet by default (ftlab from INFO, libraries from WARNING), everything back with
``hydra.verbose=true``, wired through the job_logging config."""

from __future__ import annotations

import logging

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ftlab.training.console import ConsoleFilter
from tests.helpers import CONF_DIR


def record(name: str, level: int, message: str = "hello") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def console_filter(*overrides: str) -> ConsoleFilter:
    """The console filter as Hydra builds it from conf/hydra/job_logging/ftlab.yaml for these overrides."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    spec = OmegaConf.to_container(cfg.hydra.job_logging.filters.console, resolve=True)
    assert spec.pop("()") == "ftlab.training.console.ConsoleFilter"
    return ConsoleFilter(**spec)


@pytest.mark.parametrize("name,level,quiet,verbose", [
    ("ftlab.train", logging.INFO, True, True),
    ("ftlab.train", logging.DEBUG, False, True),
    ("transformers.modeling_utils", logging.INFO, False, True),
    ("lightning.pytorch.utilities.rank_zero", logging.INFO, False, True),
    ("lightning.pytorch.utilities.rank_zero", logging.WARNING, True, True),
    ("urllib3", logging.DEBUG, False, False),
])
def test_quiet_by_default_and_the_detail_back_with_hydra_verbose(name, level, quiet, verbose):
    assert console_filter().filter(record(name, level)) is quiet
    assert console_filter("hydra.verbose=true").filter(record(name, level)) is verbose


def test_a_library_deprecation_shows_only_when_verbose():
    deprecation = record("py.warnings", logging.WARNING, "x.py:1: FutureWarning: old")
    deprecation.library_deprecation = True
    assert not console_filter().filter(deprecation)
    assert console_filter("hydra.verbose=true").filter(deprecation)
