"""ONNX for every task (NER logits, a causal LM with its past key values), int8 quantization with ONNX Runtime, and
the PyTorch fp32 / ONNX fp32 / ONNX int8 comparison in metrics.json, the model card and the console."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ftlab.core.checks import ConfigError
from ftlab.train import train
from ftlab.validate import validate_config
from tests.helpers import (
    compose,
    make_tiny_classifier,
    make_tiny_conll,
    make_tiny_llama,
    make_tiny_ner_bert,
    make_tiny_text,
    tiny_overrides,
)
from tests.tasks.test_lm import lm_overrides
from tests.tasks.test_ner import ner_overrides

INT8 = ("export_onnx=true", "onnx.quantize=int8")


@pytest.fixture(scope="module")
def ner_job(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx-ner")
    out = root / "job"
    cfg = compose(ner_overrides(make_tiny_ner_bert(root / "bert"), make_tiny_conll(root / "ner.conll"), out,
                                "eval_before=false", *INT8))
    return _trained(cfg, out)


@pytest.fixture(scope="module")
def lm_job(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx-lm")
    out = root / "job"
    cfg = compose(lm_overrides(make_tiny_llama(root / "llama"), make_tiny_text(root / "text.jsonl"), out,
                               "eval_before=false", *INT8))
    return _trained(cfg, out)


def _trained(cfg, out):
    """Train the job, then save what Hydra saves in a job directory (the command line rebuilds the test split from
    it); the job directory and its metrics."""
    metrics = train(cfg)
    (out / ".hydra").mkdir()
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
    return out, metrics


def _variants(metrics):
    return metrics["deploy"]["torch_fp32"], metrics["deploy"]["onnx_fp32"], metrics["deploy"]["onnx_int8"]


@pytest.mark.slow
def test_ner_exports_token_logits_with_parity_on_test_rows(ner_job):
    out, metrics = ner_job
    parity = json.loads((out / "onnx" / "parity.json").read_text())
    assert parity["task"] == "token_classification" and parity["inputs"] == 12  # the 12 real test sentences
    assert parity["max_abs_logit_diff"] <= 1e-4
    from transformers import AutoTokenizer

    from ftlab.deploy.runners import OnnxModel

    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    enc = tokenizer(["john visited new york", "mary"], padding=True, return_tensors="pt")
    logits = OnnxModel(out / "onnx" / "model.onnx")(**enc).logits
    assert logits.shape == (2, enc["input_ids"].shape[1], 7)  # O + B/I of LOC, ORG, PER per token


@pytest.mark.slow
def test_ner_predictions_through_onnx_runtime_are_ftlab_predict_rows(ner_job):
    """The ONNX backends of ``ftlab.serve`` run the task's own predictor (here: the token-classification pipeline,
    entity aggregation included) with ONNX Runtime doing the forward pass."""
    from ftlab.deploy.predict import predict
    from ftlab.deploy.runners import OnnxModel
    from ftlab.tasks.registry import get_task

    out, _ = ner_job
    texts = ["john visited new york", "mary works at unicef in paris", "li met ahmed"]
    run = get_task("token_classification").predictor(out / "model", max_length=512, max_new_tokens=64,
                                                     forward=OnnxModel(out / "onnx" / "model.onnx"))
    want = list(predict(out, texts, batch_size=3, progress=False))
    got = run(texts)
    assert [[(e["type"], e["text"], e["start"], e["end"]) for e in row["entities"]] for row in got] == \
        [[(e["type"], e["text"], e["start"], e["end"]) for e in row["entities"]] for row in want]
    assert sum(len(row["entities"]) for row in want) >= 4
    for g, w in zip(got, want):
        assert [e["score"] for e in g["entities"]] == pytest.approx([e["score"] for e in w["entities"]], abs=1e-5)


@pytest.mark.slow
def test_int8_comparison_reproduces_the_test_metric_and_measures_size_and_latency(ner_job):
    out, metrics = ner_job
    fp32, onnx, int8 = _variants(metrics)
    # The task's own metric code on each runtime's logits: PyTorch fp32 is the job's test pass again.
    assert fp32["f1"] == pytest.approx(float(metrics["test/f1"]), abs=1e-6)
    assert fp32["loss"] == pytest.approx(float(metrics["test/loss"]), rel=1e-4)
    assert onnx["f1"] == pytest.approx(fp32["f1"], abs=1e-6)
    assert int8["size_mb"] < onnx["size_mb"]
    for variant in (fp32, onnx, int8):
        for batch in ("batch_1", "batch_32"):
            ms = variant["latency_ms"][batch]
            assert 0 < ms["p50"] <= ms["p95"]
    assert metrics["deploy/int8_drop"] == pytest.approx(100 * (fp32["f1"] - int8["f1"]))
    assert metrics["deploy/int8_within_tolerance"] == (metrics["deploy/int8_drop"] <= 1.0)
    assert metrics["deploy/int8_speedup_b32"] == pytest.approx(
        fp32["latency_ms"]["batch_32"]["p50"] / int8["latency_ms"]["batch_32"]["p50"])
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["deploy"]["onnx_int8"]["f1"] == int8["f1"]
    assert json.loads((out / "onnx" / "deploy.json").read_text()) == on_disk["deploy"]
    card = (out / "model" / "README.md").read_text()
    assert "## Deployment (ONNX Runtime)" in card and card.index("## Deployment") < card.index("## Use")
    assert f"| onnx_int8 | {int8['f1']:.4f} | {int8['size_mb']:.1f} |" in card


@pytest.mark.slow
def test_causal_lm_exports_with_past_key_values(lm_job):
    out, metrics = lm_job
    parity = metrics["onnx"]
    assert parity["task"] == "causal_lm" and parity["past_layers"] == 3
    assert parity["max_abs_logit_diff"] <= 1e-4 and parity["max_abs_logit_diff_step2"] <= 1e-4
    # Greedy decoding through ONNX Runtime, feeding back the present key values, matches transformers' generate.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftlab.deploy.runners import OnnxModel

    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    enc = tokenizer(["the cat sat on a"], return_tensors="pt")
    expected = model.generate(**enc, max_new_tokens=4, do_sample=False)[0, enc["input_ids"].shape[1]:].tolist()
    onnx = OnnxModel(out / "onnx" / "model.onnx")
    ids, mask, past, generated = enc["input_ids"], enc["attention_mask"], None, []
    for _ in range(4):
        logits, past = onnx.step(ids, mask, past)
        ids = torch.tensor([[int(np.argmax(logits[0, -1]))]])
        mask = torch.cat([mask, torch.ones(1, 1, dtype=mask.dtype)], dim=1)
        generated.append(int(ids))
    assert generated == expected


@pytest.mark.slow
def test_causal_lm_int8_perplexity_is_compared_and_the_command_line_reproduces_it(lm_job, capsys):
    out, metrics = lm_job
    fp32, onnx, int8 = _variants(metrics)
    assert fp32["ppl"] == pytest.approx(float(metrics["test/ppl"]), rel=1e-5)
    assert onnx["ppl"] == pytest.approx(fp32["ppl"], rel=1e-5)
    drop = 100 * (int8["ppl"] - fp32["ppl"]) / fp32["ppl"]  # percent of perplexity
    assert metrics["deploy/int8_drop"] == pytest.approx(drop) and int8["ppl"] != fp32["ppl"]
    # The same job from the command line, on its saved config: the same test split and numbers, tolerance 0.
    from ftlab.deploy.release import main

    assert main([str(out), "--quantize", "int8", "--tolerance", "0"]) == 0
    updated = json.loads((out / "metrics.json").read_text())
    assert updated["deploy"]["onnx_int8"]["ppl"] == pytest.approx(int8["ppl"], rel=1e-6)
    assert updated["deploy/int8_within_tolerance"] is (drop <= 0) and updated["deploy"]["tolerance"] == 0
    assert (out / "model" / "README.md").read_text().count("## Deployment (ONNX Runtime)") == 1  # replaced


def _damaged_quantizer(src, dst):
    """Stands in for quantize_int8: writes the ONNX model with a classifier bias that tags every token O, a real
    model whose real metric drops far below fp32."""
    import onnx

    model = onnx.load(str(src))
    for init in model.graph.initializer:
        if init.name.endswith("classifier.bias"):
            bias = np.zeros_like(onnx.numpy_helper.to_array(init))
            bias[0] = 1e3  # label 0 is O
            init.CopyFrom(onnx.numpy_helper.from_array(bias, init.name))
    onnx.save(model, str(dst))
    return dst


@pytest.mark.slow
def test_an_int8_model_below_tolerance_is_reported_loudly(ner_job, monkeypatch, capsys):
    out, metrics = ner_job
    import ftlab.deploy.release as release

    monkeypatch.setattr(release, "quantize_int8", _damaged_quantizer)
    assert release.main([str(out), "--quantize", "int8", "--tolerance", "1.5"]) == 0
    updated = json.loads((out / "metrics.json").read_text())
    fp32, int8 = updated["deploy"]["torch_fp32"], updated["deploy"]["onnx_int8"]
    assert fp32["f1"] == pytest.approx(float(metrics["test/f1"]), abs=1e-6) and fp32["f1"] > 0.5
    assert int8["f1"] == 0  # no entity predicted
    assert updated["deploy/int8_drop"] == pytest.approx(100 * fp32["f1"])
    assert updated["deploy/int8_within_tolerance"] is False
    line = (f"WARNING: the int8 ONNX model loses {100 * fp32['f1']:.2f} points of test f1 against PyTorch fp32 "
            f"({fp32['f1']:.4f} -> 0.0000), more than onnx.tolerance=1.5: do not ship it without checking")
    assert f"[ftlab] {line}" in capsys.readouterr().err
    assert f"> **{line}**" in (out / "model" / "README.md").read_text()


def test_onnx_options_are_validated(tiny_model_dir, tiny_csv, tmp_path):
    base = tiny_overrides(tiny_model_dir, tiny_csv, tmp_path)
    with pytest.raises(ConfigError) as err:
        validate_config(compose(base + ["export_onnx=true", "onnx.quantize=int4", "onnx.tolerance=-1",
                                        "++onnx.calibrate=true"]))
    assert err.value.problems == [
        "onnx.calibrate: unknown option of the onnx node; valid: quantize, tolerance",
        "onnx.quantize='int4': unknown value; valid choices: null, int8",
        "onnx.tolerance=-1: must be a number >= 0 (points of the task metric the int8 model may lose: percentage "
        "points of accuracy / F1, percent of perplexity)"]
    with pytest.raises(ConfigError) as err:
        validate_config(compose(base + ["onnx.quantize=int8"]))
    assert err.value.problems == ["onnx.quantize='int8': quantizes the exported ONNX model, so it needs "
                                  "export_onnx=true; valid: export_onnx=true onnx.quantize=int8, or onnx.quantize=null"]
    validate_config(compose(base + list(INT8)))


@pytest.mark.slow
def test_sweep_report_shows_the_int8_columns_and_flags_a_job_over_tolerance(ner_job, tmp_path):
    from ftlab.deploy.export import write_metrics
    from ftlab.sweeps.report import build_report

    _, metrics = ner_job
    over = {**metrics, "deploy/int8_drop": 12.5, "deploy/int8_within_tolerance": False}
    for job, values in (("0", metrics), ("1", over)):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "config.yaml").write_text("monitor: val/f1\nstrategy: {name: full}\nseed: 1\n")
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(f"- seed={job}\n")
        write_metrics(tmp_path / job / "metrics.json", {k: v for k, v in values.items() if k != "test/curves"})
    build_report(tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    header = next(line for line in summary.splitlines() if line.startswith("| job |"))
    assert "| deploy/int8_drop | deploy/int8_size_ratio | deploy/int8_speedup_b1 | deploy/int8_speedup_b32 |" in header
    rows = [line for line in summary.splitlines() if line.startswith(("| 0 |", "| 1 |"))]
    drops = [row.split(" | ")[header.split(" | ").index("deploy/int8_drop")] for row in rows]
    assert drops == [f"{metrics['deploy/int8_drop']:.4g}", "12.5"]
    assert ("**WARNING: int8 ONNX models over their onnx.tolerance (deploy/int8_drop):** job 1 (12.50 points); do "
            "not ship them without checking.") in summary


def test_a_full_disk_while_exporting_is_one_line_and_leaves_nothing(tiny_model_dir, tmp_path, small_disk):
    """The exporter's own error on a full disk (numpy's "problem writing element ...", no errno) becomes one line
    naming the cause; the half-written temporary export is removed."""
    from ftlab.deploy.release import main as onnx_main

    job = tmp_path / "job"
    make_tiny_classifier(tiny_model_dir, job / "model")
    disk = small_disk(64 * 1024)  # the tiny model's ONNX weights alone take more
    with pytest.raises(SystemExit) as exc:
        onnx_main([str(job), "--output", str(disk / "onnx")])
    message = exc.value.code
    assert message.startswith(f"ftlab.onnx_export: {disk / 'onnx'}: the export could not be written (No space left "
                              "on device"), message
    assert message.endswith("nothing was written there (an earlier export in its place is intact): free space or "
                            "fix permissions, then export again") and "\n" not in message
    assert list(disk.iterdir()) == []
