"""The benchmark scripts run end to end (a couple of steps, no timing asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("script,args,expect", [
    ("throughput.py", ["--steps", "2", "--warmup", "1", "--repeats", "1", "--batch-size", "4", "--max-length", "32"],
     ["plain PyTorch loop", "ftlab (Lightning)", "HF Trainer"]),
    ("strategies.py", ["--steps", "2", "--warmup", "1", "--repeats", "1", "--batch-size", "4", "--max-length", "32",
                       "--only", "full", "partial k=1", "bitfit", "lora r=8 top 2", "ia3"],
     ["partial k=1", "bitfit", "lora r=8 top 2", "ia3", "vs floor"]),
    ("prefix_cache.py", ["--steps", "2", "--warmup", "1", "--repeats", "1", "--batch-size", "4", "--max-length", "32"],
     ["partial k=1", "head_only", "epochs 2+ speed-up", "3-epoch speed-up"]),
    ("length_grouping.py", ["--steps", "2", "--warmup", "1", "--repeats", "1", "--batch-size", "4",
                            "--max-length", "32"], ["WNUT-16 tweets (NER)", "BBC lead paragraphs", "speed-up"]),
    ("data.py", ["--steps", "2", "--warmup", "1", "--repeats", "1", "--batch-size", "4", "--max-length", "32"],
     ["dynamic", "max_length", "cached (load_from_disk)"]),
    ("data_scale.py", ["--rows", "1500", "--formats", "jsonl", "--max-length", "32"],
     ["| 1500 | jsonl |", "| cold |", "| cached |", "peak anon MB"]),
    # The GPU script's whole measurement path, on CPU with a stated peak (no GPU in CI).
    ("gpu_throughput.py", ["--device", "cpu", "--size", "tiny", "--peak-tflops", "1", "--steps", "2", "--warmup", "1",
                           "--repeats", "1", "--batch-size", "2", "--max-length", "32"],
     ["plain PyTorch loop", "ftlab (Lightning)", "MFU", "GFLOP per sample"]),
])
def test_benchmark_script_runs(script, args, expect):
    proc = subprocess.run([sys.executable, f"benchmarks/{script}", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in expect:
        assert text in proc.stdout


def test_gpu_benchmark_says_why_it_skips_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the benchmark would run")
    proc = subprocess.run([sys.executable, "benchmarks/gpu_throughput.py"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0 and "no CUDA GPU here: the GPU benchmark is skipped" in proc.stdout
