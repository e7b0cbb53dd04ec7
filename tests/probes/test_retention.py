"""Retention (what fine-tuning forgets): the reported perplexity of held-out text equals one computed by hand on the
untuned and the exported model; an unchanged encoder has CKA 1; bad settings are refused before anything is written;
a resumed job keeps its before-values; the sweep report shows the column and the plot."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ftlab.probes.retention import linear_cka
from ftlab.probes.retention_source import BEFORE_FILE, python_docs_passages, read_passages
from ftlab.train import train
from tests.helpers import CLASS_WORDS, compose, make_tiny_llama, make_tiny_text, tiny_overrides
from tests.tasks.test_lm import lm_overrides
from tests.test_bad_inputs import refused

# Words the tiny models know; the third passage is longer than max_length=16 (cut), the first wraps over two lines.
LM_PASSAGES = "the cat sat on a mat\nand then slept\n\n  a dog ran quickly on the log  \n\n" + \
              " ".join(["the dog ate fish and then the cat slept"] * 3) + "\n\nthe fish\n"
# Twelve passages of the tiny BERT's words (CKA's debiased estimate needs a few more than four).
ENCODER_PASSAGES = "\n\n".join(" ".join(CLASS_WORDS[c][(i + j) % 8] for j in range(3 + i % 4)) + " today"
                                 for i in range(4) for c in CLASS_WORDS)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def text_jsonl(tmp_path_factory):
    return make_tiny_text(tmp_path_factory.mktemp("lm") / "stories.jsonl")


def hand_perplexity(model_dir, passages: list[str], max_length: int) -> tuple[float, int]:
    """Each passage as the LM task tokenises a document (no BOS, EOS appended, cut to max_length), one at a time:
    -log p(token t | tokens < t) summed over t >= 1 and all passages, divided by the count, exponentiated."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    nll, count = 0.0, 0
    for text in passages:
        ids = (tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])[:max_length]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
        for t in range(1, len(ids)):
            nll -= logp[t - 1, ids[t]].item()
            count += 1
    return math.exp(nll / count), count


@pytest.mark.slow
def test_lm_retention_perplexity_equals_the_hand_computation(llama_dir, text_jsonl, tmp_path):
    held_out = tmp_path / "held_out.txt"
    held_out.write_text(LM_PASSAGES)
    passages = read_passages(str(held_out))
    assert passages[:2] == ["the cat sat on a mat and then slept", "a dog ran quickly on the log"]
    assert len(passages) == 4
    out = tmp_path / "job"
    metrics = train(compose(lm_overrides(llama_dir, text_jsonl, out, "trainer.max_epochs=2", "eval_batch_size=3",
                                         f"retention.source={held_out}")))
    saved = json.loads((out / "metrics.json").read_text())
    before, n_before = hand_perplexity(llama_dir, passages, max_length=16)
    after, n_after = hand_perplexity(out / "model", passages, max_length=16)
    assert saved["retention/ppl_before"] == pytest.approx(before, rel=1e-5)
    assert saved["retention/ppl_after"] == pytest.approx(after, rel=1e-5)
    assert saved["retention/ppl_change"] == pytest.approx(after / before - 1, rel=1e-5)
    assert saved["retention/tokens"] == n_before == n_after == 9 + 7 + 15 + 2
    assert saved["retention/samples"] == 4 and saved["retention/source"] == str(held_out)
    assert abs(after / before - 1) > 0.01  # training moved it (lr 1e-2 on other text)
    assert metrics["retention/ppl_after"] == saved["retention/ppl_after"]
    assert f"| retention/ppl_after | {saved['retention/ppl_after']:.4f} |" in (out / "model" / "README.md").read_text()
    assert (out / BEFORE_FILE).exists()


@pytest.mark.slow
def test_resumed_job_reports_the_untuned_values_of_its_first_run(llama_dir, text_jsonl, tmp_path):
    from ftlab.training.resume import TrainingInterrupted

    held_out = tmp_path / "held_out.txt"
    held_out.write_text(LM_PASSAGES)
    out = tmp_path / "job"
    overrides = lm_overrides(llama_dir, text_jsonl, out, "trainer.max_epochs=2", "eval_before=false",
                             f"retention.source={held_out}", "+callbacks.killer._target_=tests.helpers.SignalAt",
                             "+callbacks.killer.step=3")
    with pytest.raises(TrainingInterrupted):
        train(compose(overrides))
    assert (out / BEFORE_FILE).exists() and not (out / "metrics.json").exists()
    metrics = train(compose(overrides))  # the job directory has last.ckpt: this continues it
    assert metrics["resumed_from"]
    before, _ = hand_perplexity(llama_dir, read_passages(str(held_out)), max_length=16)
    assert metrics["retention/ppl_before"] == pytest.approx(before, rel=1e-5)  # not the resumed weights' value


def encoder_job(tiny_model_dir, tiny_csv, tmp_path, *extra) -> dict:
    held_out = tmp_path / "held_out.txt"
    held_out.write_text(ENCODER_PASSAGES)
    # constant lr: the smoke run's two steps would otherwise start at warmup's lr 0
    return train(compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path / "job", "debug=smoke",
                                        "scheduler=constant", f"retention.source={held_out}", *extra)))


@pytest.mark.slow
def test_head_only_leaves_the_encoder_representations_unchanged(tiny_model_dir, tiny_csv, tmp_path):
    metrics = encoder_job(tiny_model_dir, tiny_csv, tmp_path, "strategy=head_only", "lr=1e-1")
    assert metrics["retention/cka"] == pytest.approx(1, abs=1e-6)
    assert metrics["retention/cosine"] == pytest.approx(1, abs=1e-6)
    assert metrics["retention/samples"] == 12 and "retention/ppl_change" not in metrics


@pytest.mark.slow
def test_full_fine_tuning_moves_the_encoder_representations(tiny_model_dir, tiny_csv, tmp_path):
    metrics = encoder_job(tiny_model_dir, tiny_csv, tmp_path, "strategy=full", "lr=1e-1")
    assert metrics["retention/cka"] < 0.99 and metrics["retention/cosine"] < 0.99


def unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Song et al. (2012)'s unbiased HSIC of two Gram matrices, written in its own (Gram-space) form."""
    n = k.shape[0]
    k, l, one = k - torch.diag(torch.diag(k)), l - torch.diag(torch.diag(l)), torch.ones(n, dtype=k.dtype)
    return (torch.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3))


def test_linear_cka_by_hand_and_its_invariances():
    # Plain, one feature each: linear CKA is the squared correlation. x = (0, 1, 2), y = (0, 1, 4): centred (-1, 0, 1)
    # and (-5/3, -2/3, 7/3); covariance sum 4, squares 2 and 26/3, so r^2 = 16 / (2 * 26/3) = 12/13.
    x3, y3 = torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([[0.0], [1.0], [4.0]])
    assert linear_cka(x3, y3, debiased=False) == pytest.approx(12 / 13)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 5, generator=g, dtype=torch.float64)
    y = torch.randn(20, 7, generator=g, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    h = torch.eye(20, dtype=torch.float64) - 1 / 20  # centring: HSIC(K, L) from the Gram matrices K = XX^T, L = YY^T
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    plain = (k * l).sum() / torch.sqrt((k * k).sum() * (l * l).sum())
    debiased = unbiased_hsic(k, l) / torch.sqrt(unbiased_hsic(k, k) * unbiased_hsic(l, l))
    assert linear_cka(x, y, debiased=False) == pytest.approx(plain.item(), rel=1e-12)
    assert linear_cka(x, y) == pytest.approx(debiased.item(), rel=1e-12)
    for unbiased in (True, False):
        assert linear_cka(x, 3.7 * x @ rotation + 2.0, unbiased) == pytest.approx(1, abs=1e-12)  # rotate, scale, shift
        assert linear_cka(x, x * torch.tensor([1.0, 1, 1, 1, 9], dtype=torch.float64), unbiased) < 0.99  # anisotropic
    # Unrelated features with fewer examples than dimensions: the plain estimate reads high, the debiased one ~0.
    a, b = (torch.randn(128, 384, generator=g, dtype=torch.float64) for _ in range(2))
    assert linear_cka(a, b, debiased=False) > 0.7 and abs(linear_cka(a, b)) < 0.02


def test_python_docs_are_prose_spread_over_the_topics():
    passages = read_passages("python_docs", max_samples=128)
    assert len(passages) == len(set(passages)) == 128
    assert all(len(p.split()) >= 20 and p.endswith(".") and ">>>" not in p for p in passages)
    every = python_docs_passages()
    assert passages[0] == every[0] and passages[-1] == every[(127 * len(every)) // 128]  # spread to the end
    assert read_passages("python_docs", max_samples=128) == passages  # deterministic


BAD = {
    "++retention.sourse=python_docs": "retention.sourse: unknown option of retention; valid: max_samples, source, "
                                      "text_field; did you mean source?",
    "retention.source=wikipedia": "retention.source='wikipedia': unknown source; valid: null (off), python_docs, or a "
                                  "text file",
    "retention.source=/no/such/passages.txt": "retention.source='/no/such/passages.txt': no such file: "
                                              "/no/such/passages.txt",
    "retention.source=python_docs retention.max_samples=0": "retention.max_samples=0: must be an integer >= 4, or null",
}


@pytest.mark.parametrize("override", list(BAD))
def test_bad_retention_setting(override, tiny_model_dir, tiny_csv, tmp_path):
    assert BAD[override] in refused(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, *override.split()), tmp_path)
    assert not (tmp_path / BEFORE_FILE).exists()


def test_retention_table_without_the_text_field(tiny_model_dir, tiny_csv, tmp_path):
    message = refused(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, f"retention.source={tiny_csv}",
                                     "retention.text_field=body"), tmp_path)
    expected = f"retention.source: {tiny_csv}: no column 'body' (retention.text_field); columns there: text, label"
    assert expected in message


def test_retention_file_with_too_few_passages(tiny_model_dir, tiny_csv, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("the cat sat\n\n\n   \nthe dog ran\n")
    message = refused(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, f"retention.source={short}"), tmp_path)
    assert f"retention.source={str(short)!r}: {short} holds 2 passage(s) (non-blank paragraphs or rows); at least 4" \
        in message


def test_sweep_report_has_the_forgetting_column_and_plot(tmp_path):
    import csv

    from ftlab.sweeps.report import build_report

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task:\n    - strategy=full,partial\n")
    values = {"full": (0.25, 20.0), "partial": (0.05, 24.0)}
    for i, (strategy, (change, ppl)) in enumerate(values.items()):
        job = sweep / str(i)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- strategy={strategy}\n")
        (job / ".hydra" / "config.yaml").write_text(f"strategy:\n  name: {strategy}\nmonitor: val/loss\n")
        (job / "metrics.json").write_text(json.dumps({
            "monitor": "val/loss", "val/loss": 3.0, "test/loss": math.log(ppl), "test/ppl": ppl, "lr": 1e-4,
            "strategy_label": strategy, "params/trainable_fraction": 1.0, "train_time_s": 10.0,
            "retention/ppl_before": 30.0, "retention/ppl_after": 30.0 * (1 + change), "retention/ppl_change": change,
            "retention/source": "python_docs (Python 3.11)", "retention/samples": 128}))
    result = build_report(sweep)
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["strategy"], float(r["retention/ppl_change"])) for r in rows] == [("full", 0.25), ("partial", 0.05)]
    header = (sweep / "summary.md").read_text().split("## Jobs")[1].splitlines()[4]
    assert header.index("test/ppl") < header.index("retention/ppl_change") < header.index("trainable_pct")
    assert sweep / "plot_metric_vs_forgetting.png" in result["plots"]
    data = (sweep / "plot_metric_vs_forgetting.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
