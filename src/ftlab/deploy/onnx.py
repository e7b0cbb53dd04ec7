"""Export a fine-tuned model to ONNX and check it against PyTorch with ONNX Runtime.

``python -m ftlab.onnx_export <job dir or model dir> [--input texts.txt]`` writes ``onnx/model.onnx`` (dynamic
batch and sequence axes) and ``onnx/parity.json`` (max |logit difference| and both latencies) next to ``model/``.
Needs the ``onnx`` extra: ``pip install -e ".[onnx]"``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from ftlab.deploy.predict import model_dir, read_texts

MAX_ABS_DIFF = 1e-4
DEFAULT_TEXTS = [
    "Shares in the carmaker rose after it reported record quarterly profits.",
    "The striker scored twice as the home side won the league title.",
    "A new smartphone chip promises longer battery life.",
    "Ministers will vote on the budget next week.",
]


class OnnxUnavailable(RuntimeError):
    """Raised when onnx / onnxruntime / onnxscript are not installed."""


def _require_onnx():
    import importlib

    try:
        for name in ("onnx", "onnxscript"):  # the exporter needs both, imported lazily by torch
            importlib.import_module(name)
        import onnxruntime
    except ImportError as err:
        raise OnnxUnavailable(
            f"ONNX export needs the onnx extra ({err.name} is missing): pip install -e \".[onnx]\"") from err
    return onnxruntime


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def export_onnx(model_path: str | Path, out_dir: str | Path, texts: list[str] | None = None,
                repeats: int = 10) -> dict:
    """Export, then verify on ``texts``: raise if the logits differ by more than ``MAX_ABS_DIFF``."""
    ort = _require_onnx()
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = model_dir(model_path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=False).eval()
    names = [n for n in tokenizer.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(**dict(zip(names, inputs))).logits

    texts = texts or DEFAULT_TEXTS
    example = tokenizer(texts[:2], padding=True, truncation=True, return_tensors="pt")
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "model.onnx"
    torch.onnx.export(Logits(model), tuple(example[n] for n in names), str(onnx_path), input_names=names,
                      output_names=["logits"], dynamic_shapes=(tuple({0: batch, 1: seq} for _ in names),),
                      dynamo=True)

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    feeds = {n: enc[n].numpy() for n in names}
    with torch.inference_mode():
        reference = model(**{n: enc[n] for n in names}).logits
        torch_ms = _median_ms(lambda: model(**{n: enc[n] for n in names}), repeats)
    onnx_logits = session.run(["logits"], feeds)[0]
    ort_ms = _median_ms(lambda: session.run(["logits"], feeds), repeats)
    diff = float(abs(torch.from_numpy(onnx_logits) - reference).max())
    report = {"onnx": str(onnx_path), "inputs": len(texts), "sequence_length": int(enc["input_ids"].shape[1]),
              "max_abs_logit_diff": diff, "bound": MAX_ABS_DIFF, "torch_ms": torch_ms, "onnxruntime_ms": ort_ms,
              "speedup": torch_ms / ort_ms if ort_ms else None}
    (out_dir / "parity.json").write_text(json.dumps(report, indent=2) + "\n")
    if diff > MAX_ABS_DIFF:
        raise RuntimeError(f"ONNX logits differ from PyTorch by {diff:.3g} > {MAX_ABS_DIFF}: see {out_dir}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftlab.onnx_export", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a job directory (uses its model/) or an exported model directory")
    parser.add_argument("--input", help="texts for the parity check (.txt/.csv/.jsonl; default: built-in sentences)")
    parser.add_argument("--output", help="output directory (default: <model dir>/../onnx)")
    args = parser.parse_args(argv)
    texts = read_texts(args.input) if args.input else None
    out = Path(args.output) if args.output else model_dir(args.model).parent / "onnx"
    try:
        report = export_onnx(args.model, out, texts)
    except OnnxUnavailable as err:
        sys.exit(f"ftlab.onnx_export: {err}")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
