"""Embeddings, blocks and head are found generically on every common architecture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ftlab.model.anatomy import ArchitectureError, find_parts
from ftlab.strategies import apply_strategy

S = dict(vocab_size=100, num_labels=3)
ARCHITECTURES = {
    # name: (config, embedding prefixes, block stack path, number of physical blocks, head names)
    "bert": (lambda: __import__("transformers").BertConfig(hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                                           intermediate_size=20, **S),
             ("bert.embeddings.",), "bert.encoder.layer", 3,
             {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"}),
    "roberta": (lambda: __import__("transformers").RobertaConfig(hidden_size=16, num_hidden_layers=3,
                                                                 num_attention_heads=2, intermediate_size=20, **S),
                ("roberta.embeddings.",), "roberta.encoder.layer", 3,
                {"classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
                 "classifier.out_proj.bias"}),
    "distilbert": (lambda: __import__("transformers").DistilBertConfig(dim=16, n_layers=3, n_heads=2, hidden_dim=20,
                                                                       **S),
                   ("distilbert.embeddings.",), "distilbert.transformer.layer", 3,
                   {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"}),
    "electra": (lambda: __import__("transformers").ElectraConfig(embedding_size=8, hidden_size=16,
                                                                 num_hidden_layers=3, num_attention_heads=2,
                                                                 intermediate_size=20, **S),
                ("electra.embeddings.", "electra.embeddings_project."), "electra.encoder.layer", 3,
                {"classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
                 "classifier.out_proj.bias"}),
    # ALBERT shares one physical block across its layers: one block to freeze or train.
    "albert": (lambda: __import__("transformers").AlbertConfig(embedding_size=8, hidden_size=16, num_hidden_layers=3,
                                                               num_attention_heads=2, intermediate_size=20, **S),
               ("albert.embeddings.", "albert.encoder.embedding_hidden_mapping_in."),
               "albert.encoder.albert_layer_groups", 1,
               {"albert.pooler.weight", "albert.pooler.bias", "classifier.weight", "classifier.bias"}),
    "gpt2": (lambda: __import__("transformers").GPT2Config(n_embd=16, n_layer=3, n_head=2, n_positions=40,
                                                           pad_token_id=0, **S),
             ("transformer.wte.", "transformer.wpe."), "transformer.h", 3,
             {"transformer.ln_f.weight", "transformer.ln_f.bias", "score.weight"}),
    "llama": (lambda: __import__("transformers").LlamaConfig(hidden_size=16, intermediate_size=20, num_hidden_layers=3,
                                                             num_attention_heads=2, num_key_value_heads=1,
                                                             pad_token_id=0, **S),
              ("model.embed_tokens.",), "model.layers", 3, {"model.norm.weight", "score.weight"}),
}


def build(arch: str) -> nn.Module:
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(ARCHITECTURES[arch][0]())


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_parts_are_found(arch):
    _, embed_prefixes, stack, n_blocks, head = ARCHITECTURES[arch]
    model = build(arch)
    names = [n for n, _ in model.named_parameters()]
    parts = find_parts(model)
    assert set(parts.embeddings) == {n for n in names if n.startswith(embed_prefixes)}
    assert len(parts.blocks) == n_blocks
    for i, block in enumerate(parts.blocks):
        assert set(block) == {n for n in names if n.startswith(f"{stack}.{i}.")} != set()
    assert set(parts.head) == head
    assert sorted(parts.embeddings + sum(parts.blocks, []) + parts.head) == sorted(names)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_partial_top_block_trains_and_steps_change_exactly_it(arch):
    _, _, stack, n_blocks, head = ARCHITECTURES[arch]
    model = build(arch)
    trainable = apply_strategy(model, {"name": "partial", "trainable_layers": 1})[1].trainable
    names = [n for n, _ in model.named_parameters()]
    assert trainable == head | {n for n in names if n.startswith(f"{stack}.{n_blocks - 1}.")}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(3, 100, (4, 7))
    for _ in range(2):
        model(input_ids=ids, labels=torch.tensor([0, 1, 2, 1])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable


class NoBlocks(nn.Module):
    """A model with no nn.ModuleList: its blocks cannot be identified."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
        self.classifier = nn.Linear(4, 2)


def test_unanalysable_architecture_names_its_class_and_pattern_still_works():
    model = NoBlocks()
    with pytest.raises(ArchitectureError, match="NoBlocks"):
        find_parts(model)
    with pytest.raises(ArchitectureError, match="NoBlocks"):
        apply_strategy(model, {"name": "partial", "trainable_layers": 1})
    pattern = {"name": "pattern", "train": ["classifier", r"encoder\.1\."], "freeze": ["bias"]}
    _, selection = apply_strategy(model, pattern)
    assert selection.trainable == {"classifier.weight", "encoder.1.weight"}


# Linear layers inside one block, found generically (GPT-2's are transposed Conv1D layers).
BLOCK_LINEARS = {"bert": 6, "roberta": 6, "distilbert": 6, "electra": 6, "albert": 6, "gpt2": 4, "llama": 7}


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("strategy", [{"name": "lora", "r": 2}, {"name": "ia3"}])
def test_adapters_find_their_layers_and_a_step_changes_only_them(arch, strategy):
    _, _, _, n_blocks, head = ARCHITECTURES[arch]
    model, selection = apply_strategy(build(arch), strategy)
    adapted = {n.split(".lora_")[0].split(".ia3_l")[0] for n in selection.added}
    if strategy["name"] == "lora":  # every linear layer of every block
        assert len(adapted) == n_blocks * BLOCK_LINEARS[arch]
    else:  # keys, values and the feed-forward output of every block (GPT-2: the fused qkv and the MLP output)
        assert len(adapted) >= (2 if arch == "gpt2" else 3) * n_blocks
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # Adam: every weight with a non-zero gradient moves by about lr, however small the gradient (query and key
    # gradients are tiny while attention is near uniform).
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    batch = {"input_ids": torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]]), "labels": torch.tensor([0, 2])}
    for _ in range(2):  # lora_B starts at zero: the second step moves lora_A too
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == selection.trainable
    assert {n.split("modules_to_save.default.")[0] + n.split("modules_to_save.default.")[1] for n in changed
            if "modules_to_save" in n} == {f"base_model.model.{h}" for h in head}
