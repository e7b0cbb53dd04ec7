"""The settings a search gives each trial (``search.storage``, ``search.study``, ``search.trial``): their check, which
needs no library (the trial's pruning is ``pruning.py``)."""

from __future__ import annotations

from ftlab.core.checks import Checker, is_int

TRIAL_KEYS = ("storage", "study", "trial")


def check_trial(c: Checker) -> None:
    """``search.storage``, ``search.study`` and ``search.trial`` come together (the search sets all three)."""
    given = [k for k in TRIAL_KEYS if c.get(f"search.{k}") is not None]
    if given and len(given) != len(TRIAL_KEYS):
        missing = [f"search.{k}" for k in TRIAL_KEYS if k not in given]
        c.fail(f"search.{given[0]}", f"a search trial needs search.storage, search.study and search.trial together; "
                                     f"missing: {', '.join(missing)}")
    trial = c.get("search.trial")
    if trial is not None and (not is_int(trial) or trial < 0):
        c.fail("search.trial", "must be the trial's number (an integer >= 0)")
