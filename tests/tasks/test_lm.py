"""Causal LM: packing, prompt masking, exact perplexity, freezing a tied LLaMA, and tiny end-to-end runs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ftlab.model.loading import load_tokenizer
from ftlab.strategies import apply_strategy
from ftlab.tasks import lm
from ftlab.train import train
from ftlab.training.module import FineTuneModule
from tests.helpers import compose, make_tiny_llama, make_tiny_text


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def tokenizer(llama_dir):
    return load_tokenizer({"pretrained_model_name_or_path": str(llama_dir)})


@pytest.fixture(scope="module")
def text_jsonl(tmp_path_factory):
    return make_tiny_text(tmp_path_factory.mktemp("lm") / "stories.jsonl")


DOCS = ["the cat sat on a mat", "the dog ran", "a cat ate fish and then slept quickly on the log"]


@pytest.mark.parametrize("packing", [True, False])
def test_chunking_loses_no_token(tokenizer, packing):
    blocks = lm.tokenize_documents(tokenizer, DOCS, max_length=4, packing=packing)
    eos = tokenizer.eos_token_id
    stream = [t for doc in DOCS for t in tokenizer(doc, add_special_tokens=False)["input_ids"] + [eos]]
    assert [t for block in blocks for t in block] == stream  # every token once, in order
    assert all(1 <= len(block) <= 4 for block in blocks)
    if packing:
        assert [len(b) for b in blocks] == [4] * (len(stream) // 4) + ([len(stream) % 4] if len(stream) % 4 else [])
    else:  # no block crosses a document boundary: every EOS ends its block
        assert all(eos not in block[:-1] for block in blocks)
        assert sum(block[-1] == eos for block in blocks) == len(DOCS)


def test_prompt_is_masked_exactly_with_the_chat_template(tokenizer):
    row = lm.encode_pair(tokenizer, "the cat sat", "and then slept", max_length=64)
    tokens = tokenizer.convert_ids_to_tokens(row["input_ids"])
    assert tokens == ["<|im_start|>", "user", "the", "cat", "sat", "<|im_end|>",
                      "<|im_start|>", "assistant", "and", "then", "slept", "<|im_end|>"]
    assert row["labels"] == [-100] * 8 + row["input_ids"][8:]
    trained = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert tokenizer.decode(trained) == "and then slept <|im_end|>"  # the answer and its end-of-turn, nothing else


def test_prompt_masking_without_a_chat_template(tokenizer):
    plain = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    plain.chat_template = None
    row = lm.encode_pair(plain, "the cat sat", "and then slept", max_length=64)
    n_prompt = len(plain("the cat sat\n")["input_ids"])
    assert row["labels"][:n_prompt] == [-100] * n_prompt
    assert plain.convert_ids_to_tokens(row["input_ids"][n_prompt:]) == ["and", "then", "slept", "<|im_end|>"]
    assert row["labels"][n_prompt:] == row["input_ids"][n_prompt:]


def test_pad_collator_ignores_padding():
    batch = lm.PadCollator(pad_token_id=2)([
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]},
        {"input_ids": [8], "attention_mask": [1], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 2, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]


def lm_module(llama_dir, strategy=None):
    return FineTuneModule(
        model={"pretrained_model_name_or_path": str(llama_dir)}, strategy=strategy or {"name": "full"},
        optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-3}, scheduler={"name": "none"}, label_names=[],
        task="causal_lm")


def test_perplexity_is_the_exact_token_weighted_mean(llama_dir, tokenizer):
    module = lm_module(llama_dir).eval()
    collate = lm.PadCollator(tokenizer.pad_token_id)
    rows = [lm.encode_pair(tokenizer, p, r, 64) for p, r in [("the cat", "sat on a mat"), ("the dog ran", "and")]]
    rows.append({"input_ids": [6, 7, 8, 9, 10, 11, 12], "attention_mask": [1] * 7, "labels": [6, 7, 8, 9, 10, 11, 12]})
    batches = [collate(rows[:2]), collate(rows[2:])]  # different sizes and token counts per batch
    nll, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            module.validation_step(batch, 0)
            logits = module.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            for row_logits, labels in zip(logits, batch["labels"]):
                for t in range(1, len(labels)):  # token t is predicted from position t - 1
                    if labels[t] != -100:
                        nll -= torch.log_softmax(row_logits[t - 1].double(), -1)[labels[t]].item()
                        count += 1
    assert count == 5 + 2 + 6  # 'sat on a mat <|im_end|>', 'and <|im_end|>', 7-token text shifted by one
    assert module.val_loss.compute().item() == pytest.approx(nll / count, rel=1e-5)
    logged = {}
    module.log_dict = lambda values, **kw: logged.update(values)
    module.on_validation_epoch_end()
    assert logged["val/ppl"].item() == pytest.approx(math.exp(nll / count), rel=1e-5)


def test_partial_freezes_the_tied_embedding_and_head_together(llama_dir):
    module = lm_module(llama_dir, {"name": "partial", "trainable_layers": 1, "train_embeddings": False,
                                   "train_head": True})
    model = module.model
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied: one tensor
    assert sorted(module.trainable_names) == sorted(
        [n for n, _ in model.named_parameters() if n.startswith("model.layers.2.")] + ["model.norm.weight"])
    assert not model.lm_head.weight.requires_grad
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = module.configure_optimizers()
    batch = lm.PadCollator(2)([{"input_ids": [6, 7, 9, 10], "attention_mask": [1] * 4, "labels": [6, 7, 9, 10]}])
    model(**batch).loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(module.trainable_names)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied after the step


def test_training_the_tied_embeddings_counts_them_once(llama_dir):
    module = lm_module(llama_dir, {"name": "partial", "trainable_layers": 1, "train_embeddings": True,
                                   "train_head": True})
    model = module.model
    assert model.lm_head.weight.requires_grad
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)  # parameters() de-duplicates
    assert module.param_counts["params/trainable"] == n_trainable
    groups = module.configure_optimizers().param_groups
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and id(model.lm_head.weight) in ids


def test_untied_head_is_part_of_the_head(tmp_path):
    model_dir = make_tiny_llama(tmp_path / "untied", tie=False)
    module = lm_module(model_dir, {"name": "head_only"})
    assert sorted(module.trainable_names) == ["lm_head.weight", "model.norm.weight"]


def test_partial_on_a_30_block_llama_counts_exactly(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=30,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    per_block = sum(p.numel() for p in model.model.layers[0].parameters())
    _, selection = apply_strategy(model, {"name": "partial", "trainable_layers": 4, "train_embeddings": False,
                                       "train_head": True})
    assert {n.split(".")[2] for n in selection.trainable if n.startswith("model.layers.")} == {"26", "27", "28", "29"}
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 4 * per_block + 16  # + final norm


def lm_overrides(model_dir, data_path, out_dir, *extra):
    return ["model=hf", f"model.pretrained_model_name_or_path={model_dir}", "data=text", f"data.path={data_path}",
            "task=causal_lm", "monitor=val/loss", "monitor_mode=min", "eval_before=true", f"output_dir={out_dir}",
            "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "batch_size=4", "max_length=16",
            "lr=1e-2", "trainer.max_epochs=8", "logger=none", "data.val_size=0.2", "data.test_size=0.2", *extra]


@pytest.mark.slow
def test_tiny_lm_job_lowers_perplexity_and_exports_a_generator(llama_dir, text_jsonl, tmp_path):
    from transformers import pipeline

    from ftlab.deploy.predict import predict

    metrics = train(compose(lm_overrides(llama_dir, text_jsonl, tmp_path, "strategy=partial",
                                         "strategy.trainable_layers=2")))
    assert metrics["task"] == "causal_lm" and metrics["strategy"] == "partial"
    assert metrics["test/ppl"] < 0.6 * metrics["before/test/ppl"]  # measured: 21.7 -> 11.4
    assert metrics["test/ppl"] == pytest.approx(math.exp(metrics["test/loss"]), rel=1e-5)
    card = (tmp_path / "model" / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and f"| before/test/ppl | {metrics['before/test/ppl']:.4f} |" in card
    generate = pipeline("text-generation", model=str(tmp_path / "model"))
    out = generate("the cat sat on a", max_new_tokens=3, do_sample=False, return_full_text=False)
    assert len(out[0]["generated_text"].split()) == 3
    [pred] = list(predict(tmp_path, ["the cat sat on a"], progress=False, max_new_tokens=3))
    assert pred["generated_text"] == out[0]["generated_text"]


@pytest.mark.slow
def test_tiny_prompt_response_job(llama_dir, text_jsonl, tmp_path):
    metrics = train(compose(lm_overrides(llama_dir, text_jsonl, tmp_path, "data.format=prompt_response",
                                         "trainer.max_epochs=4")))
    assert metrics["test/loss"] < metrics["before/test/loss"]
    sizes = json.loads((tmp_path / "metrics.json").read_text())["data/split_sizes"]
    assert sum(sizes.values()) == len({line for line in text_jsonl.read_text().splitlines()})  # one row per pair


def test_documents_are_split_whole_and_disjoint():
    docs = [f"doc {i}" for i in range(20)] + ["doc 0"]
    splits = lm.split_documents({"train": docs}, 0.1, 0.2, seed=1)
    assert {k: len(v) for k, v in splits.items()} == {"test": 4, "validation": 2, "train": 14}
    assert sorted(d for part in splits.values() for d in part) == sorted(set(docs))
    assert splits == lm.split_documents({"train": docs}, 0.1, 0.2, seed=1)
    given = lm.split_documents({"train": docs, "test": ["held out"]}, 0.1, 0.2, seed=1)
    assert given["test"] == ["held out"] and len(given["train"]) == 18


@pytest.mark.slow
def test_causal_lm_sweep_reports_perplexity_before_and_after(llama_dir, text_jsonl, tmp_path):
    import csv

    from tests.test_run_py import run_cli

    sweep = tmp_path / "sweep"
    args = [o for o in lm_overrides(llama_dir, text_jsonl, tmp_path) if not o.startswith(("output_dir", "trainer.max"))]
    proc = run_cli("-m", "strategy=full,partial", "trainer.max_epochs=2", f"hydra.sweep.dir={sweep}", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["overrides"] for r in rows] == ["strategy=full", "strategy=partial"]
    for row in rows:
        metrics = json.loads((sweep / row["job"] / "metrics.json").read_text())
        assert float(row["test/ppl"]) == pytest.approx(metrics["test/ppl"])
        assert float(row["before/test/ppl"]) == pytest.approx(metrics["before/test/ppl"])
        assert float(row["best_val"]) == pytest.approx(metrics["val/loss"])  # monitor=val/loss
    assert "test/acc" not in rows[0]  # only the metrics the task has
    summary = (sweep / "summary.md").read_text()
    assert "2 jobs (2 completed, 0 failed, 0 running)" in summary and "plot_metric_vs_trainable.png" in summary


def test_text_sources(tmp_path):
    (tmp_path / "novel.txt").write_text("It was a dark night.\n\nThe end.\n")
    (tmp_path / "corpus" / "a").mkdir(parents=True)
    (tmp_path / "corpus" / "a" / "1.txt").write_text("one")
    (tmp_path / "corpus" / "2.txt").write_text("two")
    assert lm.read_documents({"path": str(tmp_path / "novel.txt")}) == {"train": ["It was a dark night.\n\nThe end.\n"]}
    assert lm.read_documents({"path": str(tmp_path / "corpus")}) == {"train": ["two", "one"]}  # sorted paths


def test_a_text_folder_skips_what_an_os_or_a_tool_left_there(tmp_path):
    corpus = tmp_path / "corpus"
    for name, text in {"a/1.txt": "one", ".ipynb_checkpoints/1-checkpoint.txt": "draft", "a/.notes.txt": "hidden",
                       "__MACOSX/a/._1.txt": "\x00\x05\x16\x07"}.items():
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        (corpus / name).write_text(text)
    assert lm.read_documents({"path": str(corpus)}) == {"train": ["one"]}
