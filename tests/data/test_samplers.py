"""Training order: length-grouped batches that cover every example once, seeded, resumable and sharded like the
plain order; and the data module that serves them."""

from __future__ import annotations

import random

from ftlab.data.samplers import LengthGroupedSampler, ResumableSampler

# 1,000 examples of 5 to 128 tokens, in batches of 8: 125 batches, megabatches of 31 (1000 // 32) batches.
_rng = random.Random(0)
LENGTHS = [_rng.randint(5, 128) for _ in range(1000)]


def grouped(epoch: int = 0, replicas: int = 1, rank: int = 0, seed: int = 7) -> LengthGroupedSampler:
    sampler = LengthGroupedSampler(LENGTHS, LENGTHS, batch_size=8, seed=seed, num_replicas=replicas, rank=rank)
    sampler.set_epoch(epoch)
    return sampler


def padded_tokens(order: list[int], batch: int = 8) -> int:
    batches = [order[i:i + batch] for i in range(0, len(order), batch)]
    return sum(len(b) * max(LENGTHS[i] for i in b) for b in batches)


def test_each_example_once_in_batches_of_similar_length():
    order = list(grouped())
    assert sorted(order) == list(range(1000))
    assert LENGTHS[order[0]] == max(LENGTHS)  # the longest batch first: out of memory at once, not mid-epoch
    plain = list(ResumableSampler(LENGTHS, seed=7))
    # Padding to each batch's longest: grouped batches hold almost only real tokens, random ones about 2/3.
    assert sum(LENGTHS) / padded_tokens(order) > 0.95
    assert sum(LENGTHS) / padded_tokens(plain) < 0.7
    # Megabatches keep the epoch random: the batch order is not simply sorted.
    firsts = [LENGTHS[order[i]] for i in range(0, 1000, 8)]
    assert firsts != sorted(firsts, reverse=True)


def test_the_order_is_seeded_per_epoch():
    assert list(grouped(epoch=0)) == list(grouped(epoch=0))
    assert list(grouped(epoch=0)) != list(grouped(epoch=1))
    assert list(grouped(seed=7)) != list(grouped(seed=8))


def test_resumption_continues_the_interrupted_epoch_exactly():
    whole = list(grouped(epoch=2))
    sampler = grouped()
    sampler.resume(2, 24 * 8)  # 24 batches were trained before the interruption
    assert list(sampler) == whole[24 * 8:]
    sampler.set_epoch(3)
    assert list(sampler) == list(grouped(epoch=3))  # only the interrupted pass is shortened


def test_two_ranks_share_the_epoch_and_step_batches_of_similar_length():
    ranks = [list(grouped(replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 500
    assert sorted(ranks[0] + ranks[1]) == list(range(1000))
    # The batches the two ranks step together come from one length-sorted megabatch: a narrow range of lengths.
    def spreads(orders):
        together = [[LENGTHS[i] for i in orders[0][k:k + 8] + orders[1][k:k + 8]] for k in range(0, 500, 8)]
        return [max(lengths) - min(lengths) for lengths in together]

    assert sum(spreads(ranks)) / 63 < 12
    assert sum(spreads([list(ResumableSampler(LENGTHS, 7, 2, r)) for r in (0, 1)])) / 63 > 80


def test_the_data_module_groups_training_batches_only(tiny_model_dir, tmp_path):
    from ftlab.data.datamodule import FineTuneData, token_counts
    from ftlab.model.loading import load_tokenizer

    # 60 distinct rows of 4 to 15 tokens.
    rows = ["text,label"] + [f"{' '.join(['apple'] * (1 + i % 12))} {i},{'food' if i % 2 else 'tech'}"
                             for i in range(60)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    cfg = {"source": "files", "path": str(tmp_path / "train.csv"), "text_column": "text", "label_column": "label",
           "val_size": 0.1, "test_size": 0.1, "cache_dir": str(tmp_path / "cache"), "num_workers": 0,
           "group_by_length": True}
    data = FineTuneData(cfg, load_tokenizer({"pretrained_model_name_or_path": str(tiny_model_dir)}),
                        max_length=16, batch_size=4)
    data.prepare_data()
    data.setup()
    train = data.datasets["train"]
    assert token_counts(train) == [len(ids) for ids in train["input_ids"]]
    loader = data.train_dataloader()
    assert isinstance(loader.sampler, LengthGroupedSampler)
    grouped_batches = list(loader)
    assert grouped_batches[0]["input_ids"].shape[1] == max(token_counts(train))
    data.cfg["group_by_length"] = False
    plain_batches = list(data.train_dataloader())

    def real_and_padding(batches):
        real = sum(int(b["attention_mask"].sum()) for b in batches)
        return real, sum(b["attention_mask"].numel() for b in batches) - real

    (real, padding), (plain_real, plain_padding) = real_and_padding(grouped_batches), real_and_padding(plain_batches)
    assert real == plain_real == sum(token_counts(train))  # the same examples, once each
    assert padding < plain_padding / 2
    assert not isinstance(data.val_dataloader().sampler, LengthGroupedSampler)
    # The prepared data does not depend on the batch order: the same cache serves both.
    assert data.cache_key() == FineTuneData({**cfg, "group_by_length": False}, data.tokenizer, 16, 4).cache_key()

