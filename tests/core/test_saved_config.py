"""A job directory saved before an ftlab class moved still resumes: moved targets are upgraded, then checked."""

from __future__ import annotations

from ftlab.core.saved_config import MOVED_TARGETS, check_saved_config, load_saved_config, upgrade_targets
from ftlab.training.callbacks import build_callbacks
from ftlab.training.checkpointing import ResumableCheckpoint

OLD = "ftlab.runtime.checkpointing.ResumableCheckpoint"  # where ResumableCheckpoint lived until the stage packages


def test_a_saved_config_naming_a_moved_class_loads_as_today_and_passes_the_check(tmp_path):
    saved = tmp_path / "config.yaml"
    saved.write_text(f"monitor: val/acc\ncallbacks:\n  last_checkpoint:\n    _target_: {OLD}\n"
                     "    every_n_train_steps: 5\n  other: [{_target_: " + OLD + "}]\n")
    cfg = load_saved_config(saved, "x")
    assert cfg.callbacks.last_checkpoint._target_ == "ftlab.training.checkpointing.ResumableCheckpoint"
    assert cfg.callbacks.other[0]._target_ == "ftlab.training.checkpointing.ResumableCheckpoint"
    assert cfg.callbacks.last_checkpoint.every_n_train_steps == 5 and cfg.monitor == "val/acc"
    assert check_saved_config({"callbacks": {"last_checkpoint": {"_target_": OLD}}}, "x")  # refused as written
    assert check_saved_config({"callbacks": dict(cfg.callbacks)}, "x") == []


def test_a_requeued_jobs_callbacks_are_built_from_the_moved_class():
    [callback] = build_callbacks({"last_checkpoint": {"_target_": OLD, "every_n_train_steps": 5}}, has_logger=False)
    assert type(callback) is ResumableCheckpoint
    assert upgrade_targets({"a": [{"_target_": "x.Y"}], "_target_": 3}) == {"a": [{"_target_": "x.Y"}], "_target_": 3}
    assert set(MOVED_TARGETS.values()) == {"ftlab.training.checkpointing.ResumableCheckpoint"}
