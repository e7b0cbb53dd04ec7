"""GPU training throughput and model FLOPs utilisation: ftlab (LightningModule + lightning.Trainer) vs a plain loop.

A BERT-base-sized classifier (randomly initialised from a BertConfig, loaded through ftlab's from_pretrained path),
real BBC News batches padded to ``--max-length``, bf16-mixed, full fine-tuning. MFU = achieved matmul FLOP/s
(``ftlab.planning.cost.training_flops``) / the GPU's dense bf16 peak. The contenders run interleaved, ``--repeats``
times.
Without a CUDA GPU it prints why and exits 0 (``--device cpu --peak-tflops X`` runs the same code on CPU).

    python benchmarks/gpu_throughput.py --steps 30 --warmup 10 --repeats 3 --batch-size 32 --max-length 128
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from common import (
    DEFAULT_MODEL,
    benchmark_parser,
    fresh_module,
    lightning_steps,
    median,
    plain_steps,
    real_batches,
    table,
    throughput,
)

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, matched against torch.cuda.get_device_name().
PEAK_BF16 = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
             "A10G": 70e12, "RTX 4090": 165e12}
SIZES = {"base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
         "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)}


def peak_flops(device: str, override: float | None) -> float | None:
    if override:
        return override * 1e12
    name = torch.cuda.get_device_name() if device == "cuda" else ""
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def make_checkpoint(directory: Path, size: str, labels: list[str]) -> dict:
    """A BERT of the given size with the default model's tokenizer, saved like a pretrained checkpoint."""
    from transformers import BertConfig, BertModel

    from ftlab.model.loading import load_tokenizer

    tokenizer = load_tokenizer(DEFAULT_MODEL)
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), **SIZES[size])).save_pretrained(directory)
    return {"pretrained_model_name_or_path": str(directory)}


def run_plain(model_cfg, labels, batches, device) -> list[float]:
    module = fresh_module(labels, model=model_cfg)
    model = module.model.to(device)
    return plain_steps(model, module.configure_optimizers(), batches, device, autocast_dtype=torch.bfloat16)


def run_ftlab(model_cfg, labels, batches, device) -> list[float]:
    return lightning_steps(fresh_module(labels, model=model_cfg), batches, device, precision="bf16-mixed")


def main(argv=None) -> None:
    parser = benchmark_parser(__doc__.splitlines()[0], steps=30, warmup=10)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, if not in PEAK_BF16")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: the GPU benchmark is skipped (run it where a GPU is, or with --device cpu)")
        return
    batches, labels = real_batches(args.warmup + args.steps, args.batch_size, args.max_length, pad_to_max=True)
    peak = peak_flops(args.device, args.peak_tflops)
    with tempfile.TemporaryDirectory() as tmp:
        model_cfg = make_checkpoint(Path(tmp), args.size, labels)
        from ftlab.planning.cost import training_flops

        flops_per_sample = training_flops(fresh_module(labels, model=model_cfg).model, 1, args.max_length)
        contenders = {"plain PyTorch loop": run_plain, "ftlab (Lightning)": run_ftlab}
        results: dict[str, list[float]] = {name: [] for name in contenders}
        memory: dict[str, int] = {}
        for _ in range(args.repeats):  # interleaved: machine noise hits every contender alike
            for name, run in contenders.items():
                if args.device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                times = run(model_cfg, labels, batches, args.device)
                results[name].append(throughput(times, args.warmup, args.batch_size))
                if args.device == "cuda":
                    memory[name] = torch.cuda.max_memory_allocated()
    plain = median(results["plain PyTorch loop"])
    rows = []
    for name, values in results.items():
        achieved = median(values) * flops_per_sample
        rows.append({"contender": name, "samples/s (median)": median(values), "vs plain loop": median(values) / plain,
                     "TFLOP/s": achieved / 1e12, "MFU": f"{achieved / peak:.1%}" if peak else "n/a (peak unknown)",
                     "peak memory GiB": memory[name] / 2**30 if name in memory else "n/a",
                     "runs": ", ".join(f"{x:.1f}" for x in values)})
    device = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"\nthroughput on {device}: BERT-{args.size}, bf16-mixed, full fine-tuning, {args.steps} steps after "
          f"{args.warmup} warm-up, batch {args.batch_size} x {args.max_length} tokens, "
          f"{flops_per_sample / 1e9:.1f} GFLOP per sample, peak {peak / 1e12 if peak else 'unknown'} TFLOP/s, "
          f"{args.repeats} interleaved repeats")
    print(table(rows, ["contender", "samples/s (median)", "vs plain loop", "TFLOP/s", "MFU", "peak memory GiB",
                       "runs"]))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
