"""Full, partial and adapter fine-tuning: step time and optimizer memory of each strategy against its floor.

With the top k of L blocks trainable, backward computes weight gradients for k blocks and input gradients down to
the lowest trainable block, so a step should cost about (1 + 2k/L)/3 of a full step (forward = 1/3 of a full
step, each block's backward = 2/3 split evenly between input and weight gradients), plus the head. BitFit, LoRA
and IA3 on every block need input gradients through every block but almost no weight gradients: (1 + L/L)/3;
LoRA on the top k blocks: (1 + k/L)/3 (LoRA's own low-rank products are not counted). Optimizer state is measured
from the tensors AdamW actually holds.

    python benchmarks/strategies.py --steps 8 --warmup 2 --repeats 3
"""

from __future__ import annotations

import torch
from common import benchmark_parser, fresh_module, median, median_step_seconds, plain_steps, real_batches, table

L = 6  # MiniLM's blocks
# name -> (strategy config, floor: the fraction of a full step's work that the strategy cannot skip)
STRATEGIES = {
    "full": ({"name": "full"}, 1.0),
    **{f"partial k={k}": ({"name": "partial", "trainable_layers": k}, (1 + 2 * k / L) / 3) for k in (1, 2, 3)},
    "head_only": ({"name": "head_only"}, 1 / 3),
    "bitfit": ({"name": "bitfit"}, 2 / 3),
    "lora r=8": ({"name": "lora", "r": 8, "dropout": 0.1}, 2 / 3),
    "lora r=8 no dropout": ({"name": "lora", "r": 8, "dropout": 0.0}, 2 / 3),
    "lora r=8 top 2": ({"name": "lora", "r": 8, "dropout": 0.1, "layers": 2}, (1 + 2 / L) / 3),
    "ia3": ({"name": "ia3"}, 2 / 3),
}


def run(strategy: dict, batches, labels, warmup: int) -> tuple[float, int, int]:
    """Median step time (s) after warm-up, optimizer-state bytes, trainable parameters."""
    module = fresh_module(labels, strategy)
    optimizer = module.configure_optimizers()
    seconds = median_step_seconds(plain_steps(module.model, optimizer, batches), warmup)
    state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                if torch.is_tensor(t) and t.dim() > 0)
    return seconds, state, module.param_counts["params/trainable"]


def main(argv=None) -> None:
    parser = benchmark_parser(__doc__.splitlines()[0], steps=8, warmup=2)
    parser.add_argument("--only", nargs="*", default=list(STRATEGIES), help="strategies to run")
    args = parser.parse_args(argv)
    batches, labels = real_batches(args.warmup + args.steps, args.batch_size, args.max_length)
    names = [n for n in STRATEGIES if n in args.only]
    step = {n: [] for n in names}
    memory, trainable = {}, {}
    for _ in range(args.repeats):  # interleaved
        for name in names:
            seconds, memory[name], trainable[name] = run(STRATEGIES[name][0], batches, labels, args.warmup)
            step[name].append(seconds)
    full = median(step["full"]) if "full" in step else None
    rows = []
    for name in names:
        floor = STRATEGIES[name][1]
        ratio = median(step[name]) / full if full else float("nan")
        rows.append({"strategy": name, "step ms (median)": 1000 * median(step[name]), "vs full": ratio,
                     "floor": floor, "vs floor": ratio / floor, "trainable": trainable[name],
                     "optimizer state MiB": memory[name] / 2**20,
                     "state / trainable bytes": memory[name] / max(trainable[name], 1)})
    print(f"\nstep time and optimizer memory, {args.steps} steps after {args.warmup} warm-up, batch {args.batch_size}, "
          f"max_length {args.max_length}, {torch.get_num_threads()} threads, {args.repeats} interleaved repeats")
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
