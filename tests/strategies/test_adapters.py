"""PEFT adapters as strategies: exact trainable sets and counts, frozen base, merged and adapter-only exports,
checks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from ftlab.core.checks import Checker, ConfigError
from ftlab.model.anatomy import count_parameters
from ftlab.model.loading import load_model
from ftlab.planning.cost import build_plan
from ftlab.strategies import apply_strategy, strategy_label
from ftlab.strategies.lora import LoRA
from ftlab.train import train
from ftlab.validate import validate_config
from tests.helpers import compose, make_tiny_conll, make_tiny_llama, make_tiny_ner_bert, make_tiny_text, tiny_overrides

HEAD = {"base_model.model.bert.pooler.modules_to_save.default.dense.weight",
        "base_model.model.bert.pooler.modules_to_save.default.dense.bias",
        "base_model.model.classifier.modules_to_save.default.weight",
        "base_model.model.classifier.modules_to_save.default.bias"}
LINEARS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
           "intermediate.dense", "output.dense")


def lora_names(blocks, layers=LINEARS, extra=("lora_A", "lora_B")):
    return {f"base_model.model.bert.encoder.layer.{b}.{layer}.{kind}.default.weight"
            for b in blocks for layer in layers for kind in extra}


def ia3_names(blocks):
    return {f"base_model.model.bert.encoder.layer.{b}.{layer}.ia3_l.default"
            for b in blocks for layer in ("attention.self.key", "attention.self.value", "attention.output.dense",
                                          "output.dense")}


@pytest.fixture
def bert(tiny_model_dir):
    return load_model({"pretrained_model_name_or_path": str(tiny_model_dir)}, ["a", "b", "c"])


# hidden 32, intermediate 37, 3 classes. LoRA r=4 adds r*(in+out) per layer: q, k, v, attention output 4*64 each,
# intermediate 4*(32+37), output 4*(37+32): 1576 per block. The head (pooler 1056 + classifier 99) trains fully.
# IA3 adds one scale per output of key and value (32 each) and per input of the feed-forward layers (PEFT's BERT
# default "output.dense" also matches attention.output.dense: 32, and output.dense: 37): 133 per block. DoRA adds a
# magnitude per output: 4*32 + 37 + 32 = 197 per block.
@pytest.mark.parametrize("strategy,adapter_names,count,label", [
    ({"name": "lora", "r": 4}, lora_names([0, 1]), 2 * 1576 + 1155, "lora(r=4)"),
    ({"name": "lora", "r": 4, "layers": 1}, lora_names([1]), 1576 + 1155, "lora(r=4,layers=1)"),
    ({"name": "lora", "r": 4, "layers": -1}, lora_names([0]), 1576 + 1155, "lora(r=4,layers=-1)"),
    ({"name": "lora", "r": 4, "target_modules": ["query", "value"]},
     lora_names([0, 1], ("attention.self.query", "attention.self.value")), 2 * 512 + 1155, "lora(r=4)"),
    ({"name": "lora", "r": 4, "use_dora": True},
     lora_names([0, 1]) | lora_names([0, 1], extra=("lora_magnitude_vector",)), 2 * (1576 + 197) + 1155,
     "dora(r=4)"),
    ({"name": "ia3"}, ia3_names([0, 1]), 2 * 133 + 1155, "ia3"),
    ({"name": "ia3", "layers": 1}, ia3_names([1]), 133 + 1155, "ia3(layers=1)"),
])
def test_exactly_the_adapter_and_the_head_train(bert, strategy, adapter_names, count, label):
    base_total = sum(p.numel() for p in bert.parameters())
    model, selection = apply_strategy(bert, strategy)
    assert selection.trainable == adapter_names | HEAD
    assert {n for n, p in model.named_parameters() if p.requires_grad} == selection.trainable
    assert selection.added == adapter_names
    counts = count_parameters(model, skip=selection.copies)
    assert counts["params/trainable"] == count
    assert counts["params/total"] == base_total + count - 1155  # PEFT's frozen copy of the head is not counted
    plan = build_plan(model, selection, batch_size=8, max_length=16)
    assert plan["params"]["trainable"] == count and plan["params"]["total"] == counts["params/total"]
    assert plan["params"]["adapter"] == count - 1155
    assert plan["memory_bytes"]["optimizer_state"] == 2 * 4 * count  # AdamW: two fp32 states per trainable weight
    # Back-propagation runs down to the lowest adapted block, as full fine-tuning of those blocks would.
    assert plan["backward_blocks"] == (1 if strategy.get("layers") == 1 else 2)
    assert strategy_label(strategy) == label


@pytest.mark.slow
def test_lora_job_keeps_the_base_frozen_and_exports_merged_and_adapter(tiny_model_dir, tiny_csv, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    metrics = train(compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, "strategy=lora", "strategy.r=4",
                                           "trainer.max_epochs=8", "lr=2e-2")))
    assert metrics["strategy_label"] == "lora(r=4)" and metrics["params/trainable"] == 2 * 1576 + 1155
    assert metrics["test/acc"] > 0.8  # measured: 1.0 (chance is 1/3)

    # Frozen weights are bit-identical to the base checkpoint; every adapter and head weight moved.
    base = load_file(tiny_model_dir / "model.safetensors")
    state = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    init = dict(apply_strategy(load_model({"pretrained_model_name_or_path": str(tiny_model_dir)}, ["food", "sport",
                                                                                                   "tech"]),
                               {"name": "lora", "r": 4})[0].named_parameters())
    for key, tensor in state.items():
        name = key.removeprefix("model.")
        plain = name.removeprefix("base_model.model.bert.").replace(".base_layer", "")
        if plain in base:
            assert torch.equal(tensor, base[plain]), name
        elif "lora_B" in name or "modules_to_save" in name:
            assert not torch.equal(tensor, init[name]), name  # lora_B starts at zero
    # adapter/ holds the adapter and the head only (PEFT's format), a small fraction of the model.
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert sum(t.numel() for t in adapter.values()) == 2 * 1576 + 1155
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == 4

    # The adapter on the base checkpoint and the merged model/ give the same logits on the test texts.
    texts = ["bread cheese pasta today", "goal match team coach", "chip software laptop code the"]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    base_model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, config=merged.config)
    adapted = PeftModel.from_pretrained(base_model, tmp_path / "adapter").eval()
    with torch.no_grad():
        expected, got = adapted(**batch).logits, merged(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert got.argmax(-1).tolist() == [0, 1, 2]  # food, sport, tech

    # Plain transformers loads model/ with peft unimportable.
    code = ("import sys; sys.modules['peft'] = None\n"
            "from transformers import pipeline\n"
            f"p = pipeline('text-classification', model={str(tmp_path / 'model')!r}, device='cpu')\n"
            f"print([r['label'] for r in p({texts!r})])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "['food', 'sport', 'tech']"
    card = (tmp_path / "model" / "README.md").read_text()
    assert "`../adapter/`" in card
    from ftlab.deploy.predict import predict

    assert [p["label"] for p in predict(tmp_path, texts, progress=False)] == ["food", "sport", "tech"]


@pytest.mark.slow
def test_lora_on_ner_and_on_a_causal_lm(tmp_path):
    from transformers import pipeline

    ner_dir, conll = make_tiny_ner_bert(tmp_path / "ner-bert"), make_tiny_conll(tmp_path / "ner.conll")
    ner = train(compose(["model=hf", f"model.pretrained_model_name_or_path={ner_dir}", "data=wnut16",
                         f"data.path={conll}", "data.val_size=0.2", "data.test_size=0.2", "task=token_classification",
                         "monitor=val/f1", f"output_dir={tmp_path / 'ner'}", "trainer.accelerator=cpu",
                         "trainer.enable_progress_bar=false", "batch_size=8", "max_length=32", "lr=1e-2",
                         "trainer.max_epochs=10", "logger=none", "strategy=lora", "strategy.r=4", "strategy.dropout=0",
                         "eval_before=true"]))
    # On this tiny random-weight BERT, LoRA learns slowly (test F1 0.10 after 10 epochs, head_only 0.07, full
    # fine-tuning 0.9 after 15): the test checks that it learns and exports, not how well.
    assert ner["test/loss"] < 0.6 * ner["before/test/loss"]  # measured: 1.97 -> 0.70
    adapter = json.loads((tmp_path / "ner" / "adapter" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "TOKEN_CLS"
    # The merged export equals the base with the PEFT adapter on top (PEFT's own loader, not ftlab's export).
    from peft import PeftModel
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    merged = AutoModelForTokenClassification.from_pretrained(tmp_path / "ner" / "model").eval()
    assert sorted(merged.config.id2label.values()) == ["B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER", "O"]
    base = AutoModelForTokenClassification.from_pretrained(ner_dir, config=merged.config)
    adapted = PeftModel.from_pretrained(base, tmp_path / "ner" / "adapter").eval()
    batch = AutoTokenizer.from_pretrained(tmp_path / "ner" / "model")(["john visited new york"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, adapted(**batch).logits, atol=1e-5, rtol=1e-5)
    tagger = pipeline("token-classification", model=str(tmp_path / "ner" / "model"), aggregation_strategy="first")
    assert all(e["entity_group"] in {"LOC", "ORG", "PER"} for e in tagger("john visited new york"))

    llama, text = make_tiny_llama(tmp_path / "llama"), make_tiny_text(tmp_path / "text.jsonl")
    lm = train(compose(["model=hf", f"model.pretrained_model_name_or_path={llama}", "data=text", f"data.path={text}",
                        "task=causal_lm", "monitor=val/loss", "monitor_mode=min", "eval_before=true",
                        f"output_dir={tmp_path / 'lm'}", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
                        "batch_size=4", "max_length=16", "lr=1e-2", "trainer.max_epochs=4", "logger=none",
                        "data.val_size=0.2", "data.test_size=0.2", "strategy=lora", "strategy.train_head=false"]))
    assert lm["test/ppl"] < 0.8 * lm["before/test/ppl"]
    # 3 blocks of q (32->32), k and v (32->16, one KV head), o (32->32), gate and up (32->64), down (64->32), r=8.
    per_block = 8 * (64 + 48 + 48 + 64 + 96 + 96 + 96)
    assert lm["params/trainable"] == 3 * per_block
    generate = pipeline("text-generation", model=str(tmp_path / "lm" / "model"))
    out = generate("the cat sat on a", max_new_tokens=3, do_sample=False, return_full_text=False)
    assert len(out[0]["generated_text"].split()) == 3


@pytest.mark.parametrize("overrides,key,fragment", [
    (["strategy.target_modules=[querry]"], "strategy.target_modules",
     "'querry' names no linear layer in the blocks; valid: attention.output.dense, attention.self.key"),
    (["strategy.r=0"], "strategy.r", "must be a positive int"),
    (["strategy.layers=5"], "strategy.layers", "valid: -2..-1 or 1..2"),
    (["strategy.dropout=1.5"], "strategy.dropout", "fraction in [0, 1)"),
    (["strategy.train_head=false"], "strategy.train_head", "newly initialised and must train"),
    (["++strategy.rank=4"], "strategy.rank", "unknown"),
    (["strategy.quantize=8bit"], "strategy.quantize", "valid choices: null, 4bit"),
    pytest.param(["strategy.quantize=4bit"], "strategy.quantize", "needs a CUDA GPU",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="QLoRA runs where a GPU is")),
])
def test_bad_lora_options_are_one_clear_error(tiny_model_dir, tiny_csv, tmp_path, overrides, key, fragment):
    cfg = compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, "strategy=lora", *overrides))
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert len(err.value.problems) == 1, err.value.problems
    assert err.value.problems[0].startswith(key) and fragment in err.value.problems[0], err.value.problems
    assert not any(tmp_path.iterdir())  # nothing written


def test_ia3_without_a_default_for_the_architecture_asks_for_its_modules(tmp_path, tiny_csv):
    from transformers import MPNetConfig, MPNetModel

    from tests.helpers import make_tiny_bert

    make_tiny_bert(tmp_path / "m")  # its tokenizer
    MPNetModel(MPNetConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32)).save_pretrained(tmp_path / "m")
    cfg = compose(tiny_overrides(tmp_path / "m", tiny_csv, tmp_path / "out", "strategy=ia3"))
    with pytest.raises(ConfigError, match="no IA3 default for model type 'mpnet': set strategy.target_modules"):
        validate_config(cfg)


def test_a_model_without_linear_layers_in_its_blocks_is_refused():
    class Blocks(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.LayerNorm(4) for _ in range(2))

    c = Checker(compose(["strategy=lora"]))
    LoRA().check(c, Blocks(), 2)
    assert c.problems == ["strategy.name='lora': Blocks has no linear layers inside its blocks for an adapter; use a "
                          "freezing strategy"]


def test_layer_decay_gives_each_blocks_adapter_its_depths_learning_rate(bert):
    from ftlab.training.optimization import param_groups

    model, selection = apply_strategy(bert, {"name": "lora", "r": 4})
    groups = {g["name"]: g for g in param_groups(model, 0.01, lr=1.0, layer_decay=0.5)}
    assert {name: g["lr"] for name, g in groups.items()} == {
        "block.0/decay": 0.25, "block.1/decay": 0.5, "head/decay": 1.0, "head/no_decay": 1.0}
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in groups["block.0/decay"]["params"]} == lora_names([0])
    assert sum(len(g["params"]) for g in groups.values()) == len(selection.trainable)


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA needs a CUDA GPU")
def test_qlora_trains_on_a_4bit_base_and_exports_a_full_precision_merge(tiny_model_dir, tiny_csv, tmp_path):
    pytest.importorskip("bitsandbytes", reason="the optional extra: pip install -e '.[qlora]'")
    from transformers import AutoModelForSequenceClassification

    metrics = train(compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, "strategy=lora", "strategy.r=4",
                                           "strategy.quantize=4bit", "trainer.accelerator=gpu", "trainer.devices=1",
                                           "trainer.precision=bf16-mixed", "trainer.max_epochs=8", "lr=2e-2")))
    assert metrics["strategy_label"] == "qlora(r=4)" and metrics["test/acc"] > 0.6
    assert sum(t.numel() for t in load_file(tmp_path / "adapter" / "adapter_model.safetensors").values()) == 4307
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert "quantization_config" not in config  # plain transformers loads it, without bitsandbytes
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("arch", ["bert", "roberta"])
@pytest.mark.parametrize("strategy", [{"name": "lora", "r": 4}, {"name": "ia3"}])
def test_merged_export_equals_the_adapted_model(arch, strategy, tmp_path):
    from types import SimpleNamespace

    from transformers import AutoModelForSequenceClassification

    from ftlab.deploy.export import export_adapter
    from tests.model.test_anatomy import build

    model, selection = apply_strategy(build(arch), strategy)
    torch.manual_seed(1)
    with torch.no_grad():  # as if trained: every trainable weight moved
        for name, param in model.named_parameters():
            if name in selection.trainable:
                param.add_(0.3 * torch.randn_like(param))
    model.eval()
    batch = {"input_ids": torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])}
    with torch.no_grad():
        expected = model(**batch).logits
    module = SimpleNamespace(model=model, hparams=SimpleNamespace(strategy=strategy))
    merged = export_adapter(module, tmp_path / "adapter")
    merged.save_pretrained(tmp_path / "model")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, expected)  # the trained model itself is untouched
