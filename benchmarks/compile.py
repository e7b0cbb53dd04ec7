"""``torch.compile`` of the model (``model.compile=true``) against eager mode: training step time of full and
partial k=1 fine-tuning on real BBC News batches, and the time the first compiled steps take.

Each repeat builds fresh modules; eager and compiled contenders alternate. Wall and process CPU time per step.

    python benchmarks/compile.py --steps 8 --warmup 3 --repeats 3
"""

from __future__ import annotations

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

STRATEGIES = {"full": {"name": "full"}, "partial k=1": {"name": "partial", "trainable_layers": 1}}


def main(argv=None) -> None:
    parser = benchmark_parser(__doc__.splitlines()[0], steps=8, warmup=3)
    args = parser.parse_args(argv)
    batches, labels = real_batches(args.warmup + args.steps, args.batch_size, args.max_length)
    results = {(name, mode): [] for name in STRATEGIES for mode in ("eager", "compiled")}
    for _ in range(args.repeats):
        for name, strategy in STRATEGIES.items():
            for mode in ("eager", "compiled"):
                torch._dynamo.reset()
                module = fresh_module(labels, strategy)
                if mode == "compiled":
                    module.model.compile()
                results[name, mode].append(timed_steps(module.model, module.configure_optimizers(), batches))
    rows = []
    for name in STRATEGIES:
        for clock, k in CLOCKS:
            eager = [median_times(run[args.warmup:])[k] for run in results[name, "eager"]]
            compiled = [median_times(run[args.warmup:])[k] for run in results[name, "compiled"]]
            first = [sum(s[k] for s in run[:args.warmup]) for run in results[name, "compiled"]]
            rows.append({"strategy": name, "clock": clock, "eager step ms": 1000 * median(eager),
                         "compiled step ms": 1000 * median(compiled),
                         "speed-up median (min-max)": spread([e / c for e, c in zip(eager, compiled)]),
                         f"first {args.warmup} compiled steps s": median(first)})
    print(f"\ntorch.compile, {args.steps} steps after {args.warmup} warm-up (compilation), batch {args.batch_size}, "
          f"max_length {args.max_length}, {torch.get_num_threads()} threads, {args.repeats} repeats")
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
