"""How far the cost plan's memory estimate is from the memory training really takes, on this CPU.

Each strategy runs in a fresh process (so no earlier peak hides its own): MiniLM is loaded and the strategy applied,
then the resident memory is sampled every millisecond while a few training steps run (forward, backward, AdamW
step, with gradients kept until the next step as a training loop does). The measured cost is the peak during the
steps minus the memory before the first of them (the weights and AdamW's state, created by one tiny step first, are
in both; the state AdamW holds is compared with the plan's exactly); the plan's estimate of that increment is
gradients + activations (``plan.json``). Error = estimate / measured - 1.

    python benchmarks/plan_memory.py --steps 4 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

from common import benchmark_parser, fresh_module, real_batches

# glibc keeps freed blocks below a threshold that grows to 32 MiB, so resident memory would count tensors long freed;
# a fixed 128 KiB threshold maps every tensor above it on its own and returns it when freed.
CHILD_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_ARENA_MAX": "1"}
STRATEGIES = {"full": {"name": "full"}, "partial k=1": {"name": "partial", "trainable_layers": 1},
              "partial k=3": {"name": "partial", "trainable_layers": 3}, "lora r=8": {"name": "lora", "r": 8}}


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(strategy: dict, steps: int, batch_size: int, max_length: int) -> dict:
    """In this process: the plan's estimate and the measured peak increment of ``steps`` training steps."""
    import torch

    from ftlab.planning.cost import build_plan

    torch.set_num_threads(1)
    batches, labels = real_batches(steps, batch_size, max_length, pad_to_max=True)
    module = fresh_module(labels, strategy)
    plan = build_plan(module.model, module.selection, batch_size=batch_size, max_length=max_length)
    optimizer = module.configure_optimizers()
    module.model.train()
    peak, running = [rss()], True

    def sample():
        while running:
            peak.append(rss())
            time.sleep(0.001)

    # One tiny step first: library code paged in by the first backward, and AdamW's state (compared exactly below)
    # are then part of the baseline; what the real steps add is gradients, activations and transients.
    tiny = {k: v[:1, :8] if v.dim() > 1 else v[:1] for k, v in batches[0].items()}
    module.model(**tiny).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                if torch.is_tensor(t) and t.dim() > 0)
    peak = [rss()]
    before = rss()
    thread = threading.Thread(target=sample)
    thread.start()
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)  # gradients live from one backward to the next step's zero_grad
        module.model(**batch).loss.backward()
        optimizer.step()
    running = False
    thread.join()
    memory = plan["memory_bytes"]
    return {"measured": max(peak) - before, "estimate": memory["gradients"] + memory["activations_estimate"],
            "activations": memory["activations_estimate"], "gradients": memory["gradients"],
            "optimizer_planned": memory["optimizer_state"], "optimizer_held": state}


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0], steps=4, warmup=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one measurement, in a fresh process
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(STRATEGIES[args.child], args.steps, args.batch_size, args.max_length)))
        return
    print(f"MiniLM, batch {args.batch_size} x {args.max_length} (padded), fp32, {args.steps} steps, one thread; "
          f"{args.repeats} fresh processes per strategy, interleaved")
    results: dict[str, list[dict]] = {name: [] for name in STRATEGIES}
    for _ in range(args.repeats):
        for name in STRATEGIES:
            out = subprocess.run([sys.executable, __file__, "--child", name, "--steps", str(args.steps),
                                  "--batch-size", str(args.batch_size), "--max-length", str(args.max_length)],
                                 capture_output=True, text=True, check=True, env=CHILD_ENV)
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'strategy':<14}{'AdamW MiB plan/held':>21}{'grads MiB':>11}{'activ. MiB':>12}{'estimate MiB':>14}"
          f"{'measured MiB (min-max)':>26}{'error':>20}")
    for name, runs in results.items():
        measured = [r["measured"] / 2**20 for r in runs]
        errors = [r["estimate"] / r["measured"] - 1 for r in runs]
        r = runs[0]
        print(f"{name:<14}{r['optimizer_planned'] / 2**20:>11.1f}/{r['optimizer_held'] / 2**20:<9.1f}"
              f"{r['gradients'] / 2**20:>11.1f}{r['activations'] / 2**20:>12.1f}{r['estimate'] / 2**20:>14.1f}"
              f"{statistics.median(measured):>12.1f} ({min(measured):.1f}-{max(measured):.1f})"
              f"{statistics.median(errors):>+10.0%} ({min(errors):+.0%}..{max(errors):+.0%})")


if __name__ == "__main__":
    main()
