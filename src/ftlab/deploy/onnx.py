"""Export a fine-tuned model to ONNX and check it against PyTorch with ONNX Runtime, for every task.

Text and token classifiers export ``(input_ids, attention_mask[, token_type_ids]) -> logits``; a causal LM exports
the step of a generation loop, with its past key values as inputs and outputs (``ftlab.deploy.onnx_graphs``).
``onnx/model.onnx`` (dynamic batch, sequence and past axes) and ``onnx/parity.json`` (max |logit difference| and
both latencies) are written next to ``model/``. The parity check runs on real inputs (a job's test texts, or the
tool's ``--input``); for a causal LM it checks the first step and a second step fed the returned past.

The model directory, the texts and the output are checked before anything loads; nothing half-written stays: the
files are built in a temporary directory next to ``onnx/`` and renamed at the end. The command line is
``python -m ftlab.onnx_export`` (``ftlab.deploy.release``).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from ftlab.core.atomic_files import write_failure
from ftlab.core.checks import FtlabError
from ftlab.deploy.export import set_permissions
from ftlab.deploy.onnx_graphs import UnsupportedModel, export_graph, position_ids, quiet_exporter
from ftlab.deploy.output_paths import check_output_target
from ftlab.deploy.predict import check_model_dir, model_task
from ftlab.deploy.quantize import INT8_FILE
from ftlab.deploy.runners import OnnxModel, require_onnx
from ftlab.tasks.registry import get_task

MAX_ABS_DIFF = 1e-4
# Every file an export writes into its directory (model.onnx.data: the weights torch.onnx stores beside the graph;
# the int8 model and deploy.json: --quantize); a directory holding nothing else is an earlier export, safe to replace.
EXPORT_FILES = ("model.onnx", "model.onnx.data", "parity.json", INT8_FILE, "deploy.json")
DEFAULT_TEXTS = [
    "Shares in the carmaker rose after it reported record quarterly profits.",
    "The striker scored twice as the home side won the league title.",
    "A new smartphone chip promises longer battery life.",
    "Ministers will vote on the budget next week.",
]

__all__ = ["MAX_ABS_DIFF", "ParityError", "UnsupportedModel", "check_exportable", "check_out_dir",
           "export_onnx"]


class ParityError(RuntimeError):
    """Raised when ONNX Runtime's logits differ from PyTorch's by more than ``MAX_ABS_DIFF``."""


def check_exportable(model_path: str | Path) -> Path:
    """The model directory of ``model_path`` after the model-directory checks (every ftlab task exports)."""
    path = check_model_dir(model_path)
    model_task(path)
    return path


def check_out_dir(out_dir: str | Path, option: str = "--output", model_dir: Path | None = None,
                  job: Path | None = None, texts: Path | None = None) -> Path:
    """An output directory for the ONNX files: a path that does not exist yet (created), an empty directory or an
    earlier export (replaced whole: every entry in it a file an export writes, ``EXPORT_FILES``). It may not be,
    hold or lie inside ``model_dir`` (the model exported) or the ``texts`` file read, nor be or lie inside a job
    directory (``job``: the one whose ``model/`` is exported; others are recognised on disk) other than as the
    exported job's own ``onnx/`` (``job``, else the directory holding ``model_dir`` when that is named ``model``)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FtlabError(f"{option} {out}: exists and is not a directory; give a directory (default: onnx/ next to "
                         "model/)")
    reads = [(what, Path(path)) for what, path in (("the model directory", model_dir), ("the --input file", texts))
             if path is not None]
    own = job if job is not None else (model_dir.parent if model_dir is not None and model_dir.name == "model"
                                       else None)
    check_output_target(out, option, reads, jobs=[job] if job is not None else [], job_output="onnx", own_job=own)
    # The export replaces the directory whole: anything but what an earlier export wrote would be deleted with it.
    if out.is_dir() and (unknown := next((p for p in sorted(out.iterdir()) if not _written_by_export(p)), None)):
        raise FtlabError(f"{option} {out}: holds {unknown.name}, which is not a file an export writes "
                         f"({', '.join(EXPORT_FILES)}), and the export replaces the directory whole; give a new or "
                         "empty directory, or an earlier export")
    existing = next((p for p in [out, *out.parents] if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise FtlabError(f"{option} {out}: {existing} is not writable; give a directory you can write to")
    return out


def _written_by_export(entry: Path) -> bool:
    """``entry`` is a file an export writes: one of ``EXPORT_FILES``, or the temporary file a quantization killed
    before its rename left (``atomic_write``: ``.model.int8.onnx.<random>.onnx``)."""
    if entry.is_symlink() or not entry.is_file():
        return False
    return entry.name in EXPORT_FILES or (entry.name.startswith(f".{INT8_FILE}.") and entry.name.endswith(".onnx"))


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished ``tmp`` directory to ``out_dir``, replacing an earlier export there."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
        os.replace(out_dir, old / out_dir.name)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def export_onnx(model_path: str | Path, out_dir: str | Path, texts: list[str] | None = None,
                repeats: int = 10) -> dict:
    """Export, then verify on ``texts``: raise ``ParityError`` if the logits differ by more than ``MAX_ABS_DIFF``
    (the files stay in ``out_dir`` for inspection).

    The model directory is checked first (``FtlabError``: missing, incomplete or corrupt). ``out_dir`` is built in
    a temporary directory next to it and appears only complete, files 0o644 and directories 0o755 whatever the umask.
    """
    path = check_exportable(model_path)
    out_dir = check_out_dir(out_dir, "output directory", model_dir=path)
    require_onnx()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        report = _export(path, out_dir, tmp, texts or DEFAULT_TEXTS, repeats)
        set_permissions(tmp)
        _replace_dir(tmp, out_dir)
    except OSError as err:  # a full disk, a quota, permissions: checked in the temporary directory, still there
        raise FtlabError(f"{out_dir}: the export could not be written ({write_failure(err, tmp)}); nothing was "
                         "written there (an earlier export in its place is intact): free space or fix permissions, "
                         "then export again") from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if report["max_abs_logit_diff"] > MAX_ABS_DIFF:
        raise ParityError(f"ONNX logits differ from PyTorch by {report['max_abs_logit_diff']:.3g} > {MAX_ABS_DIFF}: "
                          f"see {out_dir}")
    return report


def _export(path: Path, out_dir: Path, tmp: Path, texts: list[str], repeats: int) -> dict:
    """Export the model at ``path`` into ``tmp`` and measure parity; paths in the report name ``out_dir``."""
    import torch
    from transformers import AutoTokenizer


    task = model_task(path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    model = get_task(task).model_class().from_pretrained(path, trust_remote_code=False).eval()
    with quiet_exporter():
        graph = export_graph(task, model, tokenizer, texts, str(tmp / "model.onnx"))
    onnx = OnnxModel(tmp / "model.onnx")
    enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    inputs = {n: enc[n] for n in graph["inputs"] if n in enc}
    # A causal LM's graph counts positions over real tokens (as generate does); so does the reference here.
    extra = {"position_ids": position_ids(enc["attention_mask"])} if task == "causal_lm" else {}
    with torch.inference_mode():
        reference = model(**inputs, **extra).logits
        torch_ms = _median_ms(lambda: model(**inputs, **extra), repeats)
    diff = float((onnx(**inputs).logits - reference).abs().max())
    ort_ms = _median_ms(lambda: onnx(**inputs), repeats)
    report = {"onnx": str(out_dir / "model.onnx"), "task": task, "inputs": len(texts),
              "sequence_length": int(enc["input_ids"].shape[1]), "max_abs_logit_diff": diff, "bound": MAX_ABS_DIFF,
              "torch_ms": torch_ms, "onnxruntime_ms": ort_ms, "speedup": torch_ms / ort_ms if ort_ms else None}
    if task == "causal_lm":
        report.update(_second_step_parity(model, onnx, enc))
        report["max_abs_logit_diff"] = max(diff, report["max_abs_logit_diff_step2"])
    (tmp / "parity.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _second_step_parity(model, onnx: OnnxModel, enc) -> dict:
    """A second generation step (each row's greedy next token) fed the past the first step returned, in both
    runtimes: the past key values leave and re-enter the graph correctly."""
    import torch

    mask = enc["attention_mask"]
    with torch.inference_mode():
        first = model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=position_ids(mask), use_cache=True)
        last = mask.sum(1) - 1
        next_ids = first.logits[torch.arange(len(last)), last].argmax(-1, keepdim=True)
        mask2 = torch.cat([mask, torch.ones_like(next_ids)], dim=1)
        second = model(input_ids=next_ids, attention_mask=mask2, position_ids=position_ids(mask2, mask.shape[1]),
                       cache=first.cache, use_cache=True).logits
    _, present = onnx.step(enc["input_ids"], mask)
    logits2, _ = onnx.step(next_ids, mask2, present)
    return {"max_abs_logit_diff_step2": float((torch.from_numpy(logits2) - second).abs().max()),
            "past_layers": len(present) // 2}
