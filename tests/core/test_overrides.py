"""An override's key and value as Hydra saved it: one reading for the report, the run identity and resume."""

from __future__ import annotations

import pytest

from ftlab.core.overrides import override_key, override_value


@pytest.mark.parametrize("override,key,value", [
    ("lr=1e-5,2e-5", "lr", "1e-5,2e-5"),
    ("+trainer.max_steps=5", "trainer.max_steps", "5"),
    ("++trainer.limit_val_batches=2", "trainer.limit_val_batches", "2"),
    ("~callbacks.early_stopping", "callbacks.early_stopping", None),
    ("data.path='a=b.csv'", "data.path", "'a=b.csv'"),
    ("db@backup=mysql", "db@backup", "mysql"),
])
def test_key_and_value_as_written(override, key, value):
    assert (override_key(override), override_value(override)) == (key, value)
