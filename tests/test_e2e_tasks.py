"""The NER and causal-LM experiments with their real checkpoints and data, on small slices."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from ftlab.train import train
from tests.helpers import compose

pytestmark = pytest.mark.slow

QUIET = ["logger=none", "trainer.enable_progress_bar=false"]


def test_ner_wnut_slice(tmp_path):
    # One validation, after the sixth step: with several, an untrained head's entity F1 is 0 at every point and the
    # best-F1 checkpoint is the first one.
    cfg = compose(["experiment=ner_wnut", f"output_dir={tmp_path}", *QUIET, "data.max_train_samples=96",
                   "data.max_eval_samples=48", "trainer.max_epochs=1", "curve_points=null"])
    metrics = train(cfg)
    assert metrics["data/split_sizes"] == {"train": 96, "validation": 48, "test": 48}
    labels = json.loads((tmp_path / "model" / "config.json").read_text())["id2label"]
    assert len(labels) == 21 and labels["0"] == "O"  # 10 WNUT entity types, B- and I- each
    assert metrics["params/total"] == 22_565_376 + 384 * 21 + 21  # MiniLM body (no pooler) + token head
    # Six steps already teach the untuned random head that most tokens are O.
    assert metrics["test/loss"] < metrics["before/test/loss"] / 2
    assert metrics["test/acc"] > 0.8 > metrics["before/test/acc"]


def test_lm_bbc_slice_on_smollm2(tmp_path, monkeypatch):
    from transformers import pipeline

    from ftlab.model import loading as models

    cfg = compose(["experiment=lm_bbc", f"output_dir={tmp_path}", *QUIET, "data.max_train_samples=4",
                   "data.max_eval_samples=2", "batch_size=2", "max_length=32", "strategy=partial",
                   "strategy.trainable_layers=2"])
    metrics = train(cfg)
    assert metrics["params/total"] == 134_515_008  # tied embedding / LM head counted once
    assert metrics["params/trainable"] == 2 * 3_540_096 + 576  # top 2 of 30 LLaMA blocks + final RMSNorm
    assert metrics["global_step"] == 2
    assert 10 < metrics["before/test/ppl"] < 200 and math.isfinite(metrics["test/ppl"])

    # The dequantised copy is cached: a second load never touches the GGUF file again.
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained",
                        lambda *a, **k: pytest.fail("dequantised again"))
    cached = Path(models.checkpoint_dir(dict(cfg.model)))
    assert (cached / "config.json").is_file() and cached.is_relative_to(Path(os.environ["FTLAB_CACHE"]))
    monkeypatch.undo()
    generate = pipeline("text-generation", model=str(tmp_path / "model"))
    out = generate("The Bank of England said", max_new_tokens=4, do_sample=False, return_full_text=False)
    assert out[0]["generated_text"].strip()
