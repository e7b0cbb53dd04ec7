"""A local checkpoint directory is checked before loading, including the file names its shard index gives."""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import AutoModelForSequenceClassification

from ftlab.model.local_files import model_dir_problem


@pytest.fixture(scope="module")
def sharded(tiny_model_dir, tmp_path_factory):
    """The tiny BERT saved in several safetensors shards with their index, beside its tokenizer."""
    root = tmp_path_factory.mktemp("sharded") / "model"
    shutil.copytree(tiny_model_dir, root)
    (root / "model.safetensors").unlink()
    AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).save_pretrained(root, max_shard_size="20KB")
    return root


def with_index(sharded, tmp_path, rename: dict[str, str]):
    """A copy of the sharded checkpoint whose index names shards as ``rename`` says (old name -> new)."""
    root = tmp_path / "model"
    shutil.copytree(sharded, root)
    index_path = root / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"] = {k: rename.get(v, v) for k, v in index["weight_map"].items()}
    index_path.write_text(json.dumps(index))
    return root


def test_a_genuine_sharded_checkpoint_passes_and_loads(sharded):
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # really sharded
    assert model_dir_problem(sharded) is None
    assert AutoModelForSequenceClassification.from_pretrained(sharded).num_parameters() > 0


@pytest.mark.parametrize("outside", ["../../outside.safetensors", "sub/../../outside.safetensors",
                                     "/tmp/outside.safetensors"])
def test_a_shard_named_outside_the_directory_is_refused_without_reading_it(sharded, tmp_path, outside):
    first = sorted(set(json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"].values()))[0]
    root = with_index(sharded, tmp_path, {first: outside})
    target = (root / outside) if not outside.startswith("/") else None
    if target is not None:  # the file exists where the name points, so only the name can be refused
        target.resolve().parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sharded / first, target.resolve())
    assert model_dir_problem(root) == (f"model.safetensors.index.json lists the shard {outside!r}, outside its own "
                                       f"directory; valid: file names in {root}; re-download or re-export the "
                                       "checkpoint")


def test_a_missing_shard_is_named(sharded, tmp_path):
    root = with_index(sharded, tmp_path, {})
    shard = sorted(p.name for p in root.glob("model-*.safetensors"))[-1]
    (root / shard).unlink()
    assert model_dir_problem(root) == (f"model.safetensors.index.json lists the shard {shard}, which is missing; "
                                       "re-download or re-export the checkpoint")
