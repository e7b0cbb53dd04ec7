"""Using a fine-tuned model: predict CLI, ONNX export with ONNX Runtime parity, and the model card."""

from __future__ import annotations

import json

import pytest
import torch

from ftlab.deploy.predict import main as predict_main
from ftlab.train import train
from ftlab.training.module import FineTuneModule
from tests.helpers import compose, tiny_overrides

TEXTS = ["goal team coach league", "pasta soup cheese bread", "laptop chip server cloud", "ball score big news"]


@pytest.fixture(scope="module")
def job(tiny_model_dir, tiny_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("use-job")
    metrics = train(compose(tiny_overrides(tiny_model_dir, tiny_csv, out, "trainer.max_epochs=4", "lr=3e-3",
                                           "callbacks.early_stopping=null", "export_onnx=true")))
    return out, metrics


@pytest.mark.slow
def test_predict_cli_matches_the_lightning_module(job, tmp_path):
    out, metrics = job
    inputs = tmp_path / "in.csv"
    inputs.write_text("review\n" + "\n".join(TEXTS) + "\n")
    assert predict_main([str(out), "--input", str(inputs), "--text-column", "review",
                         "--output", str(tmp_path / "preds.jsonl"), "--batch-size", "3"]) == 0
    preds = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    module = FineTuneModule.load_from_checkpoint(metrics["best_checkpoint"], map_location="cpu").eval()
    with torch.no_grad():
        logits = module(**module.tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    expected = [module.model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    assert [p["text"] for p in preds] == TEXTS
    assert [p["label"] for p in preds] == expected
    for p, row in zip(preds, logits.softmax(-1).tolist()):
        assert list(p["probs"]) == ["food", "sport", "tech"]
        assert list(p["probs"].values()) == pytest.approx(row, abs=1e-6)


@pytest.mark.slow
def test_onnx_export_matches_pytorch(job):
    out, metrics = job
    parity = json.loads((out / "onnx" / "parity.json").read_text())
    assert (out / "onnx" / "model.onnx").stat().st_size > 10_000
    assert parity["max_abs_logit_diff"] <= 1e-4 and parity["inputs"] == 6  # the 6 real test examples
    assert parity["torch_ms"] > 0 and parity["onnxruntime_ms"] > 0
    assert metrics["onnx"]["max_abs_logit_diff"] == parity["max_abs_logit_diff"]
    # Dynamic axes: a different batch size and sequence length run through ONNX Runtime too.
    import onnxruntime as ort
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    enc = tokenizer(TEXTS[:3] + ["goal " * 20], padding=True, return_tensors="np")
    session = ort.InferenceSession(str(out / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(["logits"], {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")})[0].shape \
        == (4, 3)


@pytest.mark.slow
def test_model_card_has_the_real_numbers(job):
    out, _ = job
    card = (out / "model" / "README.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"| test/acc | {metrics['test/acc']:.4f} |" in card
    assert f"trainable parameters {metrics['params/trainable']:,} of {metrics['params/total']:,}" in card
    assert "train / validation / test =\n  48 / 6 / 6 examples" in card
    row = " | ".join(str(v) for v in metrics["test/confusion_matrix"]["matrix"][0])
    assert f"| food | {row} |" in card
    assert "lr 0.003, batch size 8, max length 16" in card and "python run.py" in card
