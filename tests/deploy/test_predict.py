"""Using a fine-tuned model: predict CLI, ONNX export with ONNX Runtime parity, and the model card."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from ftlab.core.checks import FtlabError
from ftlab.deploy.predict import main as predict_main
from ftlab.deploy.predict import predict
from ftlab.train import train
from ftlab.training.module import FineTuneModule
from tests.helpers import compose, make_tiny_classifier, tiny_overrides

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


# -- the max_length predictions read texts at: the job's own ---------------------------------------------------------
LONG = "goal team coach league " * 10  # 42 tokens with [CLS] and [SEP]: cut at 16, whole at 64 (the model's limit)


@pytest.fixture
def trained_at_16(tiny_model_dir, tmp_path):
    """A job directory whose saved config says it trained at max_length=16, and a file of long texts."""
    job = tmp_path / "job"
    make_tiny_classifier(tiny_model_dir, job / "model")
    (job / ".hydra").mkdir()
    (job / ".hydra" / "config.yaml").write_text("task: text_classification\nmax_length: 16\nbatch_size: 8\n")
    texts = tmp_path / "long.txt"
    texts.write_text(f"{LONG}\npasta soup {LONG}\n")
    return job, texts


def probs(model, texts, tmp_path, *extra: str) -> list[list[float]]:
    """The class probabilities ``python -m ftlab.predict`` writes for ``texts``."""
    out = tmp_path / f"preds-{len(list(tmp_path.glob('preds-*')))}.jsonl"
    assert predict_main([str(model), "--input", str(texts), "--output", str(out), *extra]) == 0
    return [list(json.loads(line)["probs"].values()) for line in out.read_text().splitlines()]


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ftlab.deploy.trained_length"]


def test_predict_reads_texts_at_the_max_length_the_job_trained_at(trained_at_16, tmp_path, caplog):
    job, texts = trained_at_16
    with caplog.at_level(logging.WARNING):
        default = probs(job, texts, tmp_path)
    assert warnings_of(caplog) == []
    assert default == probs(job, texts, tmp_path, "--max-length", "16")
    assert default != probs(job, texts, tmp_path, "--max-length", "64")  # the default did cut the texts at 16


def test_another_max_length_is_used_with_a_warning_naming_both(trained_at_16, tmp_path, caplog):
    job, texts = trained_at_16
    with caplog.at_level(logging.WARNING):
        at_32 = probs(job, texts, tmp_path, "--max-length", "32")
    [line] = warnings_of(caplog)
    assert "\n" not in line and "--max-length 32" in line and "max_length=16" in line, line
    assert str(job / ".hydra" / "config.yaml") in line
    assert at_32 != probs(job, texts, tmp_path)


def test_an_exported_model_directory_records_its_max_length(trained_at_16, tmp_path):
    from types import SimpleNamespace

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ftlab.deploy.export import export_model
    from ftlab.deploy.trained_length import trained_max_length

    job, texts = trained_at_16
    module = SimpleNamespace(model=AutoModelForSequenceClassification.from_pretrained(job / "model"),
                             tokenizer=AutoTokenizer.from_pretrained(job / "model"))
    model = export_model(module, tmp_path / "shipped" / "model", max_length=16)  # no job's config beside it
    assert trained_max_length(model) == (16, model / "ftlab.json")
    default = probs(model, texts, tmp_path)
    assert default == probs(model, texts, tmp_path, "--max-length", "16") != probs(model, texts, tmp_path,
                                                                                  "--max-length", "64")


def test_a_saved_config_is_read_without_resolving_it(trained_at_16, monkeypatch, caplog):
    from ftlab.deploy.trained_length import trained_max_length

    job, _ = trained_at_16
    (job / ".hydra" / "config.yaml").write_text("max_length: ${oc.env:FTLAB_TEST_LENGTH}\n")
    monkeypatch.setenv("FTLAB_TEST_LENGTH", "16")
    with caplog.at_level(logging.WARNING):
        assert trained_max_length(job / "model") is None  # not 16: the interpolation was not resolved
    [line] = warnings_of(caplog)
    assert "max_length='${oc.env:FTLAB_TEST_LENGTH}' is not a positive integer" in line


def test_the_models_own_record_comes_before_the_config_of_the_job_it_sits_in(trained_at_16):
    """A model copied into another job's directory keeps the length it was trained at (its ftlab.json), not the
    length of the job it was copied into."""
    from ftlab.deploy.trained_length import trained_max_length, write_record

    job, _ = trained_at_16
    write_record(job / "model", 32)
    assert trained_max_length(job / "model") == (32, job / "model" / "ftlab.json")


def test_a_saved_config_without_max_length_is_passed_over_silently(trained_at_16, caplog):
    from ftlab.deploy.trained_length import trained_max_length

    job, _ = trained_at_16
    (job / ".hydra" / "config.yaml").write_text("task: text_classification\nbatch_size: 8\n")
    with caplog.at_level(logging.WARNING):
        assert trained_max_length(job / "model") is None
    assert warnings_of(caplog) == []


@pytest.mark.parametrize("where", ["ftlab.json", "saved config"])
def test_a_recorded_max_length_longer_than_the_model_reads_is_refused_naming_the_file(where, tiny_model_dir,
                                                                                      tmp_path):
    """An ftlab.json or saved config from someone else may say anything: 100000 would fail inside the model (64
    positions) on every long text, so predict refuses before reading any, as it would the same --max-length."""
    job = tmp_path / "job"
    make_tiny_classifier(tiny_model_dir, job / "model")
    if where == "ftlab.json":
        source = job / "model" / "ftlab.json"
        source.write_text('{"max_length": 100000}\n')
    else:
        source = job / ".hydra" / "config.yaml"
        source.parent.mkdir()
        source.write_text("task: text_classification\nmax_length: 100000\n")
    texts = tmp_path / "in.txt"
    texts.write_text("goal team coach league\n")
    out = tmp_path / "preds.jsonl"
    with pytest.raises(SystemExit) as exc:
        predict_main([str(job), "--input", str(texts), "--output", str(out)])
    assert exc.value.code == (f"ftlab.predict: {source}: max_length=100000 (the length the model was trained at, by "
                              "this file): the model reads at most 64 tokens; valid: 1..64; correct the file, or give "
                              "--max-length")
    assert not out.exists()
    assert predict_main([str(job), "--input", str(texts), "--output", str(out), "--max-length", "16"]) == 0
    out.unlink()
    with pytest.raises(SystemExit) as exc:  # a command line asking for more than the model reads: the same refusal
        predict_main([str(job), "--input", str(texts), "--output", str(out), "--max-length", "100"])
    assert exc.value.code == "ftlab.predict: --max-length 100: the model reads at most 64 tokens; valid: 1..64"
    assert not out.exists()
    with pytest.raises(FtlabError, match=r"^--max-length 100: the model reads at most 64 tokens"):
        predict(job, ["goal team"], max_length=100)  # the Python API checks what it is given, as the tool does
