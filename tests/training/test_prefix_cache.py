"""The frozen-prefix cache: the top of the network on cached activations gives what the whole network gives, on
every architecture; a cached job equals the job without the cache; later jobs reuse it; a stale cache is rebuilt."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
import torch

from ftlab.core.checks import FtlabError
from ftlab.model.anatomy import block_stack
from ftlab.strategies import apply_strategy
from ftlab.strategies.frozen_prefix import frozen_boundary, frozen_modules
from ftlab.train import train
from ftlab.training.prefix_store import PrefixCache
from tests.helpers import compose, tiny_overrides
from tests.model.test_anatomy import ARCHITECTURES, build

LENGTHS = [7, 4, 9]


def batch(ids, rows, width):
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)  # pad id 0
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for r, i in enumerate(rows):
        input_ids[r, :LENGTHS[i]], mask[r, :LENGTHS[i]] = ids[i], 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": torch.tensor(rows)}, torch.tensor(rows)


@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a != "albert"])
@pytest.mark.parametrize("strategy", [{"name": "partial", "trainable_layers": 1}, {"name": "head_only"},
                                      {"name": "lora", "r": 2, "layers": 1, "target_modules": None}])
def test_the_top_on_cached_activations_gives_the_whole_networks_output(arch, strategy, tmp_path):
    model, selection = apply_strategy(build(arch), strategy)
    boundary = frozen_boundary(model)
    assert boundary == (3 if strategy["name"] == "head_only" else 2)
    model.eval()  # the trained top without dropout too, so that outputs compare
    torch.manual_seed(1)
    ids = [torch.randint(1, 100, (n,)) for n in LENGTHS]
    cache = PrefixCache(tmp_path / "cache", LENGTHS, boundary, budget_bytes=2**30, job_id="test")
    first, index = batch(ids, [0, 1, 2], 9)
    expected = model(**first).logits
    assert torch.equal(cache.forward(model, first, index).logits, expected)  # fills the cache
    assert not cache.complete
    cache.sync()
    assert cache.complete and (tmp_path / "cache" / "manifest.json").is_file()

    calls = []
    _, stack = block_stack(model)
    hooks = [next(block.children()).register_forward_hook(lambda *a: calls.append(1)) for block in stack]
    # Other batches: another order, another padding width, an unpadded example.
    for rows, width in (([2, 0], 12), ([1], 4), ([1, 0, 2], 9)):
        replay_batch, replay_index = batch(ids, rows, width)
        calls.clear()
        replayed = cache.forward(model, replay_batch, replay_index).logits
        assert len(calls) == 3 - boundary  # only the trained blocks ran
        for hook in hooks:
            hook.remove()
        reference = model(**replay_batch).logits
        hooks = [next(block.children()).register_forward_hook(lambda *a: calls.append(1)) for block in stack]
        torch.testing.assert_close(replayed, reference, atol=2e-6, rtol=1e-5)


def test_a_model_that_shares_blocks_is_refused(tmp_path, tiny_csv):
    from transformers import AlbertConfig, AlbertModel, BertTokenizer

    from tests.helpers import make_tiny_bert

    bert = make_tiny_bert(tmp_path / "bert")
    AlbertModel(AlbertConfig(vocab_size=60, embedding_size=8, hidden_size=16, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=20, max_position_embeddings=64)
                ).save_pretrained(tmp_path / "albert")
    BertTokenizer.from_pretrained(bert).save_pretrained(tmp_path / "albert")
    with pytest.raises(FtlabError, match="AlbertForSequenceClassification shares its blocks across layers"):
        train(compose(tiny_overrides(tmp_path / "albert", tiny_csv, tmp_path / "out", "strategy=head_only",
                                     "strategy.frozen_dropout=false", "cache_frozen=true")))


RUN = ["trainer.max_epochs=3", "strategy.frozen_dropout=false", "logger=csv", "trainer.log_every_n_steps=1",
       "callbacks.early_stopping=null"]


@pytest.fixture
def replays(monkeypatch):
    """How many training steps read the cache instead of running the frozen blocks."""
    import ftlab.training.prefix_store

    count = {"steps": 0}
    original = ftlab.training.prefix_store._replaced

    def counted(*args):
        count["steps"] += 1
        return original(*args)

    monkeypatch.setattr(ftlab.training.prefix_store, "_replaced", counted)
    return count


def job(model_dir, data, out, cache_dir, *extra):
    metrics = train(compose(tiny_overrides(model_dir, data, out, *RUN, f"data.cache_dir={cache_dir}", *extra)))
    with open(next(out.glob("csv/*/metrics.csv"))) as f:
        losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    return metrics, losses


KEYS = ("val/loss", "val/acc", "test/loss", "test/acc", "test/f1")


def assert_same_run(a, b):
    (ma, la), (mb, lb) = a, b
    assert len(la) == len(lb) == 18  # 6 steps per epoch, 3 epochs
    assert max(abs(x - y) for x, y in zip(la, lb)) < 1e-6
    for key in KEYS:
        assert mb[key] == pytest.approx(ma[key], abs=1e-6), key


@pytest.mark.slow
@pytest.mark.parametrize("strategy", [["strategy=partial"], ["strategy=head_only"],
                                      ["strategy=lora", "strategy.layers=1"]])
def test_a_cached_job_equals_the_same_job_without_the_cache(tiny_model_dir, tiny_csv, tmp_path, replays, strategy):
    from ftlab.data.datamodule import token_counts

    plain = job(tiny_model_dir, tiny_csv, tmp_path / "plain", tmp_path / "cache", *strategy)
    cached = job(tiny_model_dir, tiny_csv, tmp_path / "cached", tmp_path / "cache", *strategy, "cache_frozen=true")
    assert replays["steps"] == 12  # epochs 2 and 3; the first fills the cache as it trains
    assert_same_run(plain, cached)

    plan = json.loads((tmp_path / "cached" / "plan.json").read_text())["frozen_prefix_cache"]
    [published] = list((tmp_path / "cache" / "prefix").iterdir())
    import datasets

    [prepared] = list((tmp_path / "cache" / "data").iterdir())
    tokens = sum(token_counts(datasets.load_from_disk(str(prepared))["train"]))
    assert plan == {"frozen_blocks": 2 if "head_only" in strategy[0] else 1, "examples": 48, "tokens": tokens,
                    "bytes": tokens * 32 * 4, "held_in": "memory"}
    assert (published / "values.bin").stat().st_size == plan["bytes"]

    # A later job with the same frozen prefix reads the cache from its second step (the first checks it).
    replays["steps"] = 0
    again = job(tiny_model_dir, tiny_csv, tmp_path / "again", tmp_path / "cache", *strategy, "cache_frozen=true",
                "cache_frozen_memory=1KiB")  # memory-mapped from disk
    assert replays["steps"] == 17
    assert_same_run(plain, again)


@pytest.mark.slow
@pytest.mark.parametrize("damage,warning", [
    (lambda d: (d / "values.bin").write_bytes((d / "values.bin").read_bytes()[:-100]), "is broken (values.bin has"),
    (lambda d: (d / "values.bin").unlink(), "is broken (values.bin missing)"),
    (lambda d: (d / "manifest.json").write_text("{"), "is broken (unreadable manifest"),
    # Same size, other values (another checkpoint saved with the same file names, sizes and times).
    (lambda d: (d / "values.bin").write_bytes(bytes(b ^ 0x10 for b in (d / "values.bin").read_bytes())),
     "does not match this model's frozen blocks: rebuilding it"),
])
def test_a_stale_or_broken_cache_is_rebuilt_never_used(tiny_model_dir, tiny_csv, tmp_path, replays, caplog, damage,
                                                      warning):
    first = job(tiny_model_dir, tiny_csv, tmp_path / "first", tmp_path / "cache", "strategy=partial",
                "cache_frozen=true")
    [published] = list((tmp_path / "cache" / "prefix").iterdir())
    damage(published)
    replays["steps"] = 0
    with caplog.at_level(logging.WARNING, logger="ftlab.training.prefix_cache"):
        again = job(tiny_model_dir, tiny_csv, tmp_path / "again", tmp_path / "cache", "strategy=partial",
                    "cache_frozen=true")
    assert warning in caplog.text
    assert replays["steps"] == 12  # rebuilt during the first epoch, as if there had been none
    assert_same_run(first, again)
    assert json.loads((published / "manifest.json").read_text())["examples"] == 48


def test_frozen_modules_include_gpt2s_embedding_dropout():
    model, _ = apply_strategy(build("gpt2"), {"name": "partial", "trainable_layers": 1})
    frozen = frozen_modules(model)
    assert any(m is model.transformer.drop for m in frozen)
    assert any(m is model.transformer.h[0] for m in frozen) and not any(m is model.transformer.h[2] for m in frozen)


def _metrics(job_dir):
    return json.loads((job_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_ddp_on_two_processes_with_the_cache_equals_ddp_without_it(tiny_model_dir, tiny_csv, tmp_path):
    from tests.test_run_py import run_cli

    runs = {}
    for name, extra in (("plain", []), ("cached", ["cache_frozen=true"])):
        job_dir = tmp_path / name
        proc = run_cli(*tiny_overrides(tiny_model_dir, tiny_csv, job_dir, *RUN, f"data.cache_dir={tmp_path / 'cache'}",
                                       "trainer=ddp_cpu", "strategy=partial", *extra), f"hydra.run.dir={job_dir}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        with open(next(job_dir.glob("csv/*/metrics.csv"))) as f:
            losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
        runs[name] = _metrics(job_dir), losses
    # Each rank filled its share of the first epoch; together they published the whole cache, the same values a
    # single process computes.
    [published] = list((tmp_path / "cache" / "prefix").iterdir())
    assert json.loads((published / "manifest.json").read_text())["examples"] == 48
    assert not list((tmp_path / "cache" / "prefix").glob(".*"))  # the ranks' parts are gone
    job(tiny_model_dir, tiny_csv, tmp_path / "single", tmp_path / "single-cache", "strategy=partial",
        "cache_frozen=true")
    [single] = list((tmp_path / "single-cache" / "prefix").iterdir())
    values = [torch.from_numpy(np.fromfile(d / "values.bin", dtype=np.float32)) for d in (published, single)]
    torch.testing.assert_close(values[0], values[1], atol=1e-5, rtol=1e-5)
    (plain, plain_losses), (cached, cached_losses) = runs["plain"], runs["cached"]
    assert len(cached_losses) == len(plain_losses) == 9  # rank 0's steps: 3 per epoch
    assert max(abs(a - b) for a, b in zip(plain_losses, cached_losses)) < 1e-6
    for key in KEYS:
        assert cached[key] == pytest.approx(plain[key], abs=1e-6), key


@pytest.mark.slow
@pytest.mark.parametrize("signal_step,stopped_at", [(3, 4), (8, 9)])  # filling the cache; reading it
def test_an_interrupted_cached_job_resumes_to_the_uninterrupted_result(tiny_model_dir, tiny_csv, tmp_path,
                                                                       signal_step, stopped_at):
    from tests.test_run_py import run_cli

    # val/loss is monitored, so curve.csv holds it at every validation: training must match step by step, not
    # just in the best checkpoint.
    def args(job_dir, cache, *extra):
        return [*tiny_overrides(tiny_model_dir, tiny_csv, job_dir, *RUN, "strategy=partial", "cache_frozen=true",
                                "trainer.deterministic=true", "monitor=val/loss", "monitor_mode=min",
                                f"data.cache_dir={tmp_path / cache}", *extra), f"hydra.run.dir={job_dir}"]

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_cli(*args(whole, "cache-whole")).returncode == 0
    killer = ["+callbacks.killer._target_=tests.helpers.SignalAt", f"+callbacks.killer.step={signal_step}"]
    proc = run_cli(*args(cut, "cache-cut", *killer))
    assert proc.returncode == 1 and f"SIGTERM at step {stopped_at}" in proc.stderr
    proc = run_cli(f"resume={cut}", f"hydra.run.dir={tmp_path / 'resume-invocation'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _metrics(whole), _metrics(cut)
    assert b["global_step"] == a["global_step"] == 18
    for key in KEYS:
        assert b[key] == pytest.approx(a[key], abs=1e-6), key
    curves = [[(int(r["step"]), float(r["val/loss"])) for r in csv.DictReader(open(j / "curve.csv"))]
              for j in (whole, cut)]
    assert [s for s, _ in curves[1]] == [s for s, _ in curves[0]] == [3, 6, 9, 12, 15, 18]
    assert max(abs(x - y) for (_, x), (_, y) in zip(*curves)) < 1e-6
    assert len(list((tmp_path / "cache-cut" / "prefix").iterdir())) == 1  # published, whatever the interruption


@pytest.mark.slow
def test_cache_and_length_grouping_together_equal_grouping_alone(tiny_model_dir, tiny_csv, tmp_path, replays):
    grouped = ["strategy=partial", "data.group_by_length=true"]
    plain = job(tiny_model_dir, tiny_csv, tmp_path / "plain", tmp_path / "cache", *grouped)
    cached = job(tiny_model_dir, tiny_csv, tmp_path / "cached", tmp_path / "cache", *grouped, "cache_frozen=true")
    assert replays["steps"] == 12
    assert_same_run(plain, cached)
