"""Export a fine-tuned model to ONNX and check it against PyTorch with ONNX Runtime.

``python -m ftlab.onnx_export <job dir or model dir> [--input texts.txt]`` writes ``onnx/model.onnx`` (dynamic
batch and sequence axes) and ``onnx/parity.json`` (max |logit difference| and both latencies) next to ``model/``.
Needs the ``onnx`` extra: ``pip install -e ".[onnx]"``. Only text classification models export.

The model directory, the texts and the output are checked before anything loads; a problem is one line
``ftlab.onnx_export: ...`` (exit status 1) and no ``onnx/`` directory is written (it is built in a temporary directory
next to it and renamed at the end).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ftlab.checks import FtlabError, ToolParser
from ftlab.deploy.export import set_permissions
from ftlab.deploy.predict import check_model_dir, model_task, read_texts

MAX_ABS_DIFF = 1e-4
DEFAULT_TEXTS = [
    "Shares in the carmaker rose after it reported record quarterly profits.",
    "The striker scored twice as the home side won the league title.",
    "A new smartphone chip promises longer battery life.",
    "Ministers will vote on the budget next week.",
]


EXPORTABLE_TASKS = ("text_classification",)


class OnnxUnavailable(RuntimeError):
    """Raised when onnx / onnxruntime / onnxscript are not installed."""


class ParityError(RuntimeError):
    """Raised when ONNX Runtime's logits differ from PyTorch's by more than ``MAX_ABS_DIFF``."""


def check_exportable(model_path: str | Path) -> Path:
    """The model directory of ``model_path`` after the model-directory checks, if its task exports to ONNX; an
    ``FtlabError`` naming the directory, its task and the exportable ones otherwise."""
    from ftlab.tasks import TASKS

    path = check_model_dir(model_path)
    task = model_task(path)
    if task not in EXPORTABLE_TASKS:
        valid = ", ".join(f"{t} (*{TASKS[t].architecture_suffix})" for t in EXPORTABLE_TASKS)
        raise FtlabError(f"{path}: a {task} model; ONNX export is implemented for {valid} models only")
    return path


def check_out_dir(out_dir: str | Path, option: str = "--output") -> Path:
    """An output directory for the ONNX files: a directory or a path that does not exist yet (created)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FtlabError(f"{option} {out}: exists and is not a directory; give a directory (default: onnx/ next to "
                         "model/)")
    existing = next((p for p in [out, *out.parents] if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise FtlabError(f"{option} {out}: {existing} is not writable; give a directory you can write to")
    return out


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished ``tmp`` directory to ``out_dir``, replacing an earlier export there."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
        os.replace(out_dir, old / out_dir.name)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
    """Export, then verify on ``texts``: raise if the logits differ by more than ``MAX_ABS_DIFF`` (the files stay in
    ``out_dir`` for inspection).

    The model directory is checked first (``FtlabError``: missing, incomplete or corrupt, or not a text classifier).
    ``out_dir`` is built in a temporary directory next to it and appears only complete, files 0o644 and directories
    0o755 whatever the umask.
    """
    path = check_exportable(model_path)
    out_dir = check_out_dir(out_dir, "output directory")
    ort = _require_onnx()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        report = _export(ort, path, out_dir, tmp, texts, repeats)
        set_permissions(tmp)
        _replace_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if report["max_abs_logit_diff"] > MAX_ABS_DIFF:
        raise ParityError(f"ONNX logits differ from PyTorch by {report['max_abs_logit_diff']:.3g} > {MAX_ABS_DIFF}: "
                          f"see {out_dir}")
    return report


def _export(ort, path: Path, out_dir: Path, tmp: Path, texts: list[str] | None, repeats: int) -> dict:
    """Export the model at ``path`` into ``tmp`` and measure parity; paths in the report name ``out_dir``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

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
    onnx_path = out_dir / "model.onnx"
    torch.onnx.export(Logits(model), tuple(example[n] for n in names), str(tmp / "model.onnx"), input_names=names,
                      output_names=["logits"], dynamic_shapes=(tuple({0: batch, 1: seq} for _ in names),),
                      dynamo=True)

    session = ort.InferenceSession(str(tmp / "model.onnx"), providers=["CPUExecutionProvider"])
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
    (tmp / "parity.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = ToolParser(prog="python -m ftlab.onnx_export", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a job directory (uses its model/) or an exported model directory")
    parser.add_argument("--input", help="texts for the parity check (.txt/.csv/.json/.jsonl/.parquet; default: "
                                        "built-in sentences)")
    parser.add_argument("--text-column", default="text", help="the text column of a table --input")
    parser.add_argument("--output", help="output directory (default: <model dir>/../onnx)")
    args = parser.parse_args(argv)
    try:
        path = check_exportable(args.model)
        texts = read_texts(args.input, args.text_column) if args.input else None
        out = check_out_dir(args.output) if args.output else check_out_dir(path.parent / "onnx", "output directory")
        report = export_onnx(path, out, texts)
    except (FtlabError, OnnxUnavailable, ParityError) as err:
        sys.exit(f"ftlab.onnx_export: {' '.join(str(err).split())}")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
