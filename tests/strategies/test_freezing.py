"""Which parameters each strategy trains, exactly, and generic discovery of model parts."""

from __future__ import annotations

import pytest

from ftlab.model.anatomy import count_parameters, find_parts
from ftlab.strategies import StrategyError, apply_strategy


@pytest.fixture
def bert(tiny_model_dir):
    from ftlab.model.loading import load_model

    return load_model({"pretrained_model_name_or_path": str(tiny_model_dir)}, ["a", "b", "c"])


def names(model, *prefixes):
    return {n for n, _ in model.named_parameters() if n.startswith(prefixes)}


HEAD = ("bert.pooler.", "classifier.")


def test_parts_of_bert(bert):
    parts = find_parts(bert)
    assert set(parts.embeddings) == names(bert, "bert.embeddings.")
    blocks = [names(bert, "bert.encoder.layer.0."), names(bert, "bert.encoder.layer.1.")]
    assert [set(b) for b in parts.blocks] == blocks
    assert set(parts.head) == names(bert, *HEAD)


@pytest.mark.parametrize("strategy,trainable_prefixes,count", [
    ({"name": "full"}, ("",), None),
    ({"name": "partial", "trainable_layers": 1}, ("bert.encoder.layer.1.", *HEAD), 6789 + 1056 + 99),
    ({"name": "partial", "trainable_layers": 2}, ("bert.encoder.layer.", *HEAD), 2 * 6789 + 1056 + 99),
    ({"name": "partial", "trainable_layers": 1, "train_embeddings": True},
     ("bert.embeddings.", "bert.encoder.layer.1.", *HEAD), None),
    ({"name": "partial", "trainable_layers": 2, "train_head": False}, ("bert.encoder.layer.",), 2 * 6789),
    ({"name": "head_only"}, HEAD, 1056 + 99),
])
def test_exact_trainable_parameters(bert, strategy, trainable_prefixes, count):
    trainable = apply_strategy(bert, strategy)[1].trainable
    assert trainable == names(bert, *trainable_prefixes)
    assert {n for n, p in bert.named_parameters() if p.requires_grad} == trainable
    if count is not None:
        # hidden 32, intermediate 37: a block is 4*(32*32+32) + 2*64 + (32*37+37) + (37*32+32) = 6789 parameters,
        # the pooler 32*32+32 = 1056 and the 3-class classifier 32*3+3 = 99.
        assert count_parameters(bert)["params/trainable"] == count


def test_selecting_nothing_is_an_error(bert):
    with pytest.raises(StrategyError, match="selects no parameter"):
        apply_strategy(bert, {"name": "partial", "trainable_layers": 0, "train_head": False})


def test_unknown_strategy_lists_choices(bert):
    choices = "full, partial, head_only, bitfit, pattern, gradual_unfreezing, lora, ia3"
    with pytest.raises(StrategyError, match=f"valid choices: {choices}"):
        apply_strategy(bert, {"name": "prefix_tuning"})


def test_negative_k_trains_bottom_blocks(bert):
    trainable = apply_strategy(bert, {"name": "partial", "trainable_layers": -1})[1].trainable
    assert trainable == names(bert, "bert.encoder.layer.0.", *HEAD)


def test_bitfit_trains_biases_and_head(bert):
    trainable = apply_strategy(bert, {"name": "bitfit"})[1].trainable
    biases = {n for n, _ in bert.named_parameters() if n.endswith("bias")}
    assert trainable == biases | names(bert, *HEAD)
    assert "bert.encoder.layer.0.attention.self.query.weight" not in trainable


def test_pattern_train_minus_freeze(bert):
    _, selection = apply_strategy(bert, {"name": "pattern", "train": [r"attention\.self", "classifier"],
                                      "freeze": [r"layer\.0\."]})
    assert selection.trainable == names(bert, "bert.encoder.layer.1.attention.self.", "classifier.")


def test_pattern_matching_nothing_lists_close_names(bert):
    with pytest.raises(StrategyError) as info:
        apply_strategy(bert, {"name": "pattern", "train": ["classifer.weight", "("]})
    message = str(info.value)
    assert "'classifer.weight' matches no parameter; closest names: classifier.weight" in message
    assert "'(' is not a valid regular expression" in message


def test_gradual_unfreezing_stages(bert):
    _, selection = apply_strategy(bert, {"name": "gradual_unfreezing", "every": 1, "unit": "epoch"})
    assert selection.trainable == names(bert, "")  # all trainable from the start, gated by LR
    stage = selection.stages
    assert {stage[n] for n in names(bert, *HEAD)} == {0}
    assert {stage[n] for n in names(bert, "bert.encoder.layer.1.")} == {1}
    assert {stage[n] for n in names(bert, "bert.encoder.layer.0.")} == {2}
    assert {stage[n] for n in names(bert, "bert.embeddings.")} == {3}
    assert selection.num_stages == 4
