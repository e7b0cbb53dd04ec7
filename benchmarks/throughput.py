"""Training throughput: ftlab (LightningModule + lightning.Trainer) vs a plain PyTorch loop vs HF Trainer.

Same checkpoint, same real batches in the same order, same precision (fp32, CPU here). The contenders run
interleaved, ``--repeats`` times each; the table reports medians and their ratios.

    python benchmarks/throughput.py --steps 12 --warmup 3 --repeats 3
"""

from __future__ import annotations

import tempfile
import time

import torch
from common import benchmark_parser, fresh_module, lightning_steps, median, plain_steps, real_batches, table, throughput


def run_plain(batches, labels) -> list[float]:
    module = fresh_module(labels)
    return plain_steps(module.model, module.configure_optimizers(), batches)


def run_ftlab(batches, labels) -> list[float]:
    return lightning_steps(fresh_module(labels), batches)


def run_hf(batches, labels) -> list[float]:
    from torch.utils.data import Dataset, SequentialSampler
    from transformers import Trainer, TrainerCallback, TrainingArguments

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            times.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter())

    class Batches(Dataset):  # one item = one ready batch, so HF sees exactly our batches
        def __len__(self):
            return len(batches)

        def __getitem__(self, i):
            return batches[i]

    class InOrder(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    module = fresh_module(labels)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=1, max_steps=len(batches),
                                 learning_rate=5e-5, weight_decay=0.01, lr_scheduler_type="constant",
                                 logging_steps=10, save_strategy="no", report_to=[], use_cpu=True,
                                 dataloader_num_workers=0, disable_tqdm=False)
        trainer = InOrder(model=module.model, args=args, train_dataset=Batches(),
                          data_collator=lambda items: items[0], callbacks=[Clock()])
        trainer.train()
    return times


def main(argv=None) -> None:
    parser = benchmark_parser(__doc__.splitlines()[0], steps=12, warmup=3)
    args = parser.parse_args(argv)
    batches, labels = real_batches(args.warmup + args.steps, args.batch_size, args.max_length)
    contenders = {"plain PyTorch loop": run_plain, "ftlab (Lightning)": run_ftlab, "HF Trainer": run_hf}
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):  # interleaved: machine noise hits every contender alike
        for name, run in contenders.items():
            results[name].append(throughput(run(batches, labels), args.warmup, args.batch_size))
    plain, hf = median(results["plain PyTorch loop"]), median(results["HF Trainer"])
    rows = [{"contender": name, "samples/s (median)": median(v), "vs plain loop": median(v) / plain,
             "vs HF Trainer": median(v) / hf, "runs": ", ".join(f"{x:.2f}" for x in v)}
            for name, v in results.items()]
    print(f"\nthroughput, {args.steps} steps after {args.warmup} warm-up, batch {args.batch_size}, "
          f"max_length {args.max_length}, {torch.get_num_threads()} threads, {args.repeats} interleaved repeats")
    print(table(rows, ["contender", "samples/s (median)", "vs plain loop", "vs HF Trainer", "runs"]))


if __name__ == "__main__":
    main()
