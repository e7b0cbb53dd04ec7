"""Loading a checkpoint never trains on randomly initialised pretrained weights; a head of another shape is fresh."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from safetensors.torch import load_file, save_file

from ftlab.core.checks import FtlabError
from ftlab.model.loading import load_model


def edited_checkpoint(tiny_model_dir, tmp_path, drop: str = "", config: dict | None = None):
    """A copy of the tiny BERT without the tensors whose names start with ``drop``, its config.json updated."""
    root = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, root)
    weights = load_file(root / "model.safetensors")
    if drop:
        weights = {k: v for k, v in weights.items() if not k.startswith(drop)}
        save_file(weights, root / "model.safetensors", metadata={"format": "pt"})
    if config:
        path = root / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return root


def test_a_checkpoint_missing_a_block_is_refused(tiny_model_dir, tmp_path):
    root = edited_checkpoint(tiny_model_dir, tmp_path, drop="encoder.layer.1.")
    with pytest.raises(FtlabError) as exc:
        load_model({"pretrained_model_name_or_path": str(root)}, ["a", "b", "c"])
    assert str(exc.value) == (
        f"model.pretrained_model_name_or_path={str(root)!r}: the checkpoint has no weights for 16 pretrained "
        "tensor(s) (bert.encoder.layer.1.attention.output.LayerNorm.bias, "
        "bert.encoder.layer.1.attention.output.LayerNorm.weight, bert.encoder.layer.1.attention.output.dense.bias, "
        "...), which would train from random values; valid: a complete checkpoint (re-download or re-export it)")


def test_a_block_of_another_shape_is_refused(tiny_model_dir, tmp_path):
    root = edited_checkpoint(tiny_model_dir, tmp_path, config={"intermediate_size": 40})
    with pytest.raises(FtlabError, match=r"6 pretrained tensor\(s\) have another shape in the checkpoint than its "
                                         r"config.json says \(bert.encoder.layer.0.intermediate.dense.bias: \[37\] "
                                         r"there, \[40\] expected\)"):
        load_model({"pretrained_model_name_or_path": str(root)}, ["a", "b", "c"])


def test_a_missing_pooler_and_a_head_of_another_shape_are_fresh(tiny_model_dir, tmp_path, caplog):
    from transformers import AutoModelForSequenceClassification

    tuned = tmp_path / "tuned"  # a fine-tuned 3-class classifier, without its pooler, tuned again on 4 labels
    AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=3).save_pretrained(tuned)
    weights = {k: v for k, v in load_file(tuned / "model.safetensors").items() if "pooler" not in k}
    save_file(weights, tuned / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="ftlab.model.loading"):
        model = load_model({"pretrained_model_name_or_path": str(tuned)}, ["a", "b", "c", "d"])
    assert model.classifier.weight.shape == (4, 32)
    assert "fresh classifier.bias: the checkpoint's has shape [3], this task needs [4]" in caplog.text
    encoder = "bert.encoder.layer.1.output.dense.weight"
    assert model.state_dict()[encoder].equal(weights[encoder])  # the pretrained blocks are the checkpoint's


def test_a_max_length_without_room_for_text_is_one_line(tiny_model_dir):
    from transformers import AutoTokenizer

    from ftlab.core.checks import ConfigError
    from ftlab.model.loading import check_max_length

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    with pytest.raises(ConfigError) as exc:
        check_max_length(tokenizer, 2)
    assert str(exc.value) == ("max_length=2: the tokenizer adds 2 special token(s) to each text, so no text token "
                              "would fit; valid: at least 3 (the model reads up to its limit)")
    check_max_length(tokenizer, 3)
