"""The frozen-prefix cache: training step time without the cache, while it fills (the first epoch) and reading it
(epochs 2 and later), for partial k=1 and head_only, with the frozen modules in eval mode in every contender.

Each repeat builds a fresh module and a fresh cache, then runs the three contenders over the same real BBC News
batches in turn (no cache, filling, reading); wall time and process CPU time are both recorded per step. A
3-epoch estimate combines them: (filling + 2 x reading) against 3 x no cache, per repeat.

    python benchmarks/prefix_cache.py --steps 10 --warmup 2 --repeats 5
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from common import (
    CLOCKS,
    benchmark_parser,
    fresh_module,
    median,
    median_times,
    real_batches,
    spread,
    table,
    timed_steps,
)

from ftlab.strategies.frozen_prefix import frozen_boundary
from ftlab.training.prefix_store import PrefixCache

STRATEGIES = {"partial k=1": {"name": "partial", "trainable_layers": 1, "frozen_dropout": False},
              "head_only": {"name": "head_only", "frozen_dropout": False}}


def without_index(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "example_index"}


def repeat(strategy: dict, batches, labels, warmup: int, lengths: list[int]) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) step seconds of each contender, on one fresh module and one fresh cache."""
    module = fresh_module(labels, strategy)
    optimizer = module.configure_optimizers()
    directory = Path(tempfile.mkdtemp(prefix="ftlab-prefix-bench-"))
    try:
        cache = PrefixCache(directory / "cache", lengths, frozen_boundary(module.model), 2**34, "bench")
        medians = {}
        for name, contender in (("no cache", None), ("filling (epoch 1)", cache), ("reading (epochs 2+)", cache)):
            if contender is None:
                def forward(b):
                    return module.model(**without_index(b))
            else:
                def forward(b):
                    return cache.forward(module.model, without_index(b), b["example_index"])
            medians[name] = median_times(timed_steps(module.model, optimizer, batches, forward)[warmup:])
            if name.startswith("filling"):
                cache.sync()
                assert cache.complete
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return medians


def main(argv=None) -> None:
    parser = benchmark_parser(__doc__.splitlines()[0], steps=10, warmup=2)
    args = parser.parse_args(argv)
    # The batches of the measured steps hold distinct examples: the cache covers exactly these.
    batches, labels = real_batches(args.warmup + args.steps, args.batch_size, args.max_length, index=True)
    lengths = [0] * (len(batches) * args.batch_size)
    for batch in batches:
        for i, n in zip(batch["example_index"].tolist(), batch["attention_mask"].sum(1).tolist()):
            lengths[i] = n
    runs = {name: [] for name in STRATEGIES}
    for _ in range(args.repeats):  # strategies interleaved
        for name, strategy in STRATEGIES.items():
            runs[name].append(repeat(strategy, batches, labels, args.warmup, lengths))
    rows = []
    for name, repeats in runs.items():
        for clock, k in CLOCKS:
            base = [r["no cache"][k] for r in repeats]
            fill = [r["filling (epoch 1)"][k] for r in repeats]
            read = [r["reading (epochs 2+)"][k] for r in repeats]
            rows.append({"strategy": name, "clock": clock, "no cache ms": 1000 * median(base),
                         "filling ms": 1000 * median(fill), "reading ms": 1000 * median(read),
                         "epochs 2+ speed-up": spread([b / r for b, r in zip(base, read)]),
                         "3-epoch speed-up": spread([3 * b / (f + 2 * r) for b, f, r in zip(base, fill, read)]),
                         "filling overhead": spread([f / b for b, f in zip(base, fill)])})
    print(f"\nfrozen-prefix cache, {args.steps} steps after {args.warmup} warm-up, batch {args.batch_size}, max_length "
          f"{args.max_length}, {torch.get_num_threads()} threads, {args.repeats} interleaved repeats; speed-ups: "
          "median (min-max) over repeats")
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
