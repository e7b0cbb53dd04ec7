"""From a trained model to files a service runs: ONNX export with its parity check, int8 quantization, and the
comparison of PyTorch fp32, ONNX fp32 and ONNX int8 recorded in metrics.json and the model card.

``python -m ftlab.onnx_export <job dir or model dir> [--quantize int8] [--tolerance 1.0] [--input texts.txt]``;
``export_onnx=true onnx.quantize=int8`` does the same at the end of a job. ``--quantize`` compares the variants on the
job's test split (rebuilt from its ``.hydra/config.yaml``), so it needs a job directory; the job's ``metrics.json``
and model card are updated. Problems are one line ``ftlab.onnx_export: ...`` (exit status 1).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftlab.core.atomic_files import atomic_write
from ftlab.core.checks import ConfigError, FtlabError, ToolParser, at_least, tool_name
from ftlab.core.library_bars import hide_library_bars
from ftlab.core.saved_config import load_saved_config
from ftlab.deploy.card import with_deploy_section
from ftlab.deploy.export import write_metrics
from ftlab.deploy.onnx import (
    DEFAULT_TEXTS,
    ParityError,
    UnsupportedModel,
    check_exportable,
    check_out_dir,
    export_onnx,
)
from ftlab.deploy.predict import read_texts
from ftlab.deploy.quantize import INT8_FILE, file_size, quantize_int8
from ftlab.deploy.runners import OnnxModel
from ftlab.deploy.variant_measures import compare
from ftlab.deploy.variants import flat_metrics, table, warning
from ftlab.tasks.registry import get_task
from ftlab.validate import validate_data

PARITY_TEXTS = 16  # test rows the parity check runs on


@dataclass
class JobTestSplit:
    """A job's tokenised test split and what evaluating it needs."""

    task: Any
    label_names: list[str]
    dataset: Any
    collate: Any
    batch_size: int
    tokenizer: Any

    def texts(self, n: int = PARITY_TEXTS) -> list[str]:
        """The first ``n`` test rows as text: real inputs for the parity check."""
        ids = self.dataset[:n]["input_ids"]
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)


def release(model_dir: Path, out_dir: Path, texts: list[str] | None = None, quantize: str | None = None,
            tolerance: float = 1.0, test: JobTestSplit | None = None) -> dict[str, Any]:
    """Export ``model_dir`` to ``out_dir`` (parity on ``texts``); with ``quantize="int8"`` also write the int8
    model and compare the three variants on ``test``. Returns what goes into metrics.json."""
    out: dict[str, Any] = {"onnx": export_onnx(model_dir, out_dir, texts)}
    if quantize != "int8":
        return out
    atomic_write(out_dir / INT8_FILE, lambda tmp: quantize_int8(out_dir / "model.onnx", tmp))
    if test is None:
        return out

    torch_model = test.task.model_class().from_pretrained(model_dir, trust_remote_code=False).eval()
    models = {"torch_fp32": torch_model, "onnx_fp32": OnnxModel(out_dir / "model.onnx"),
              "onnx_int8": OnnxModel(out_dir / INT8_FILE)}
    sizes = {"torch_fp32": sum(p.stat().st_size for p in model_dir.glob("*.safetensors")),
             "onnx_fp32": file_size(out_dir / "model.onnx"), "onnx_int8": file_size(out_dir / INT8_FILE)}
    report = compare(test.task, test.label_names, test.dataset, test.collate, test.batch_size, models, sizes,
                     tolerance)
    (out_dir / "deploy.json").write_text(json.dumps(report, indent=2) + "\n")
    os.chmod(out_dir / "deploy.json", 0o644)
    print(f"[ftlab] deployment variants on the test split ({report['test_examples']} examples):\n{table(report)}")
    if (line := warning(report)) is not None:
        print(f"[ftlab] {line}", file=sys.stderr)
        import logging

        logging.getLogger(__name__).warning(line)
    return {**out, "deploy": report, **flat_metrics(report)}


def job_test_split(job: Path, model_dir: Path) -> JobTestSplit:
    """The test split of the job in ``job``, rebuilt from its saved config with the exported tokenizer."""
    from omegaconf import OmegaConf

    # Local: the data module imports Lightning (seconds), which only --quantize needs, not --help or a plain export.
    from ftlab.data.datamodule import FineTuneData
    from ftlab.model.loading import load_tokenizer

    saved = job / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise FtlabError(f"{job}: --quantize compares int8 with fp32 on the job's test split, so it needs a job "
                         "directory (with .hydra/config.yaml and model/); this one has no .hydra/config.yaml")
    cfg = load_saved_config(saved, "--quantize", output_dir=job)
    try:
        validate_data(cfg)
    except ConfigError as err:
        raise FtlabError(f"{job}: --quantize rebuilds the job's test split from the data its saved config names, "
                         f"which is not as it was: {err}; put the data back where {saved} says, or export without "
                         "--quantize") from None
    task = get_task(cfg.task)
    tokenizer = load_tokenizer({"pretrained_model_name_or_path": str(model_dir)}, cfg.task)
    data = FineTuneData(OmegaConf.to_container(cfg.data, resolve=True), tokenizer, cfg.max_length, cfg.batch_size,
                        cfg.get("eval_batch_size"), cfg.seed, task=cfg.task)
    data.prepare_data()
    data.setup()
    return JobTestSplit(task, data.label_names, data.datasets["test"], task.collator(tokenizer), data.eval_batch_size,
                     tokenizer)


def update_job_files(job: Path, added: dict[str, Any]) -> None:
    """Add the comparison to an existing job's metrics.json and its model card's deployment section."""

    metrics_path = job / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    metrics.update(added)
    write_metrics(metrics_path, metrics)
    card = job / "model" / "README.md"
    if card.is_file():
        card.write_text(with_deploy_section(card.read_text(), metrics))


def main(argv: list[str] | None = None, prog: str = "python -m ftlab.onnx_export") -> int:
    parser = ToolParser(prog, __doc__)
    parser.add_argument("model", help="a job directory (uses its model/) or an exported model directory")
    parser.add_argument("--input", help="texts for the parity check (.txt/.csv/.json/.jsonl/.parquet; default: the "
                                        "job's test texts with --quantize, else built-in sentences)")
    parser.add_argument("--text-column", default="text", help="the text column of a table --input")
    parser.add_argument("--output", help="output directory (default: <model dir>/../onnx)")
    parser.add_argument("--quantize", choices=["int8"], help="also write model.int8.onnx (ONNX Runtime dynamic "
                                                             "quantization) and compare it on the job's test split")
    parser.add_argument("--tolerance", type=at_least(0, strict=False), default=1.0,
                        help="points of the test metric int8 may lose before it is reported (default 1.0)")
    args = parser.parse_args(argv)
    hide_library_bars()
    try:
        path = check_exportable(args.model)
        texts = read_texts(args.input, args.text_column) if args.input else None
        given = Path(args.model)
        # Never over what is exported nor over the job's other results (checked before anything loads).
        guard = {"model_dir": path, "job": given if path != given else None,
                 "texts": Path(args.input) if args.input else None}
        out = (check_out_dir(args.output, **guard) if args.output else
               check_out_dir(path.parent / "onnx", "output directory", **guard))
        job = path.parent if path.name == "model" else given
        test = job_test_split(job, path) if args.quantize else None
        added = release(path, out, texts or (test.texts() if test else DEFAULT_TEXTS), args.quantize,
                        args.tolerance, test)
        if test is not None:
            update_job_files(job, added)
    except (FtlabError, ParityError, UnsupportedModel) as err:
        sys.exit(f"{tool_name(prog)}: {' '.join(str(err).split())}")
    print(f"{tool_name(prog)}: {result_line(added, out)}")
    return 0


def result_line(added: dict[str, Any], out: Path) -> str:
    """What the export wrote, in one line; the numbers behind it are in ``parity.json`` (and ``deploy.json``)."""
    parity = added["onnx"]
    speed = f"; ONNX Runtime {parity['speedup']:.2f}x PyTorch" if parity.get("speedup") else ""
    line = (f"wrote {parity['onnx']} (max |logit difference| {parity['max_abs_logit_diff']:.1e} <= "
            f"{parity['bound']:.0e}{speed}; details in {out / 'parity.json'})")
    if "deploy" in added:
        line += f" and {out / 'model.int8.onnx'} (int8 against fp32 on the test split: {out / 'deploy.json'})"
    return line
