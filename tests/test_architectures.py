"""Embeddings, blocks and head are found generically on every common architecture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ftlab.models import ArchitectureError, find_parts
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
    trainable = apply_strategy(model, {"name": "partial", "trainable_layers": 1}).trainable
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
    selection = apply_strategy(model, {"name": "pattern", "train": ["classifier", r"encoder\.1\."], "freeze": ["bias"]})
    assert selection.trainable == {"classifier.weight", "encoder.1.weight"}
