"""Which checkpoints a succeeded job keeps, by policy and by kind of run."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from ftlab.training.checkpoint_retention import disk_plan, keep_policy, prune_checkpoints


@pytest.mark.parametrize("policy, kept", [("all", ["best.ckpt", "last.ckpt"]), ("best", ["best.ckpt"]),
                                          ("none", None)])
def test_prune_keeps_what_the_policy_says(tmp_path, policy, kept):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "best.ckpt").write_bytes(b"w" * 100)
    (checkpoints / "last.ckpt").write_bytes(b"w" * 300)
    (checkpoints / "best-v1.ckpt").mkdir()  # a versioned name, and a checkpoint saved as a directory (DeepSpeed)
    (checkpoints / "best-v1.ckpt" / "state.pt").write_bytes(b"w" * 50)
    freed = prune_checkpoints(checkpoints, policy)
    assert (sorted(p.name for p in checkpoints.iterdir()) if checkpoints.exists() else None) == (
        sorted([*kept, "best-v1.ckpt"]) if kept and "best.ckpt" in kept else kept)
    assert freed == {"all": 0, "best": 300, "none": 450}[policy]


def test_the_default_is_best_alone_and_none_for_a_search_trial():
    assert keep_policy(OmegaConf.create({"keep_checkpoints": None})) == "best"
    assert keep_policy(OmegaConf.create({"keep_checkpoints": None, "search": {"trial": 3}})) == "none"
    assert keep_policy(OmegaConf.create({"keep_checkpoints": "all", "search": {"trial": 3}})) == "all"


def test_disk_plan_counts_the_optimizer_state_in_last_ckpt_only():
    plan = disk_plan({"weights": 100, "optimizer_state": 200, "gradients": 100}, "best")
    assert plan == {"keep_checkpoints": "best", "files": {"model/": 100, "best.ckpt": 100, "last.ckpt": 300},
                    "while_training": 500, "after_success": 200}
    assert disk_plan({"weights": 100, "optimizer_state": 200}, "none")["after_success"] == 100
