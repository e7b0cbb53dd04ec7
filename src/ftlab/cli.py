"""The ``ftlab`` command: one entry point for fine-tuning and for every tool.

    ftlab train [overrides]          fine-tune: exactly ``python run.py [overrides]`` (``-m`` for a sweep)
    ftlab plan [overrides]           the cost plan only: ``python run.py plan_only=true [overrides]``
    ftlab report SWEEP_DIR [...]     the sweep report and its decision (``python -m ftlab.report``)
    ftlab predict JOB --input FILE   predictions as JSON lines (``python -m ftlab.predict``)
    ftlab export JOB [--quantize]    ONNX, int8 and their parity checks (``python -m ftlab.onnx_export``)
    ftlab serve JOB [--onnx]         an HTTP server with Prometheus metrics (``python -m ftlab.serve``)

``ftlab <command> --help`` describes each. ``train`` and ``plan`` run the repository's ``run.py`` with its ``conf/``
(Hydra's config search path, SLURM launchers and DDP's re-launch of ranks all work as they do for ``run.py``).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from ftlab import __version__

# command -> (module whose main(argv, prog) runs it, one line of help); train and plan run run.py instead
TOOLS = {
    "report": ("ftlab.sweeps.report", "the sweep report and its decision: tables, plots, the recommendation"),
    "predict": ("ftlab.deploy.predict", "predictions of a trained model as JSON lines"),
    "export": ("ftlab.deploy.release", "ONNX export with its parity check, and int8 quantization"),
    "serve": ("ftlab.serving.server", "serve a trained model over HTTP (LitServe, Prometheus metrics)"),
}
APP = {
    "train": "fine-tune: the same as python run.py [overrides]; -m runs a sweep",
    "plan": "print and save the cost plan without training: python run.py plan_only=true [overrides]",
}
RUN_PY = Path(__file__).resolve().parents[2] / "run.py"  # beside conf/ in the source checkout ftlab installs from


def usage() -> str:
    rows = [*APP.items(), *((name, help_) for name, (_, help_) in TOOLS.items())]
    width = max(len(name) for name, _ in rows)
    lines = "\n".join(f"  {name:<{width}}  {help_}" for name, help_ in rows)
    return (f"usage: ftlab <command> [arguments]\n\nFull, partial or parameter-efficient fine-tuning, measured.\n\n"
            f"commands:\n{lines}\n\nftlab <command> --help describes a command's arguments.\n")


def _run_app(args: list[str]) -> int:
    """Replace this process with ``python run.py args``: signals (SLURM's requeue), Hydra's job name and output
    directories, and Lightning's re-launch of DDP ranks then behave exactly as for ``run.py`` itself."""
    if not RUN_PY.is_file():
        sys.exit(f"ftlab: {RUN_PY} not found: ftlab train runs the run.py and conf/ of the checkout ftlab is "
                 "installed from (pip install -e .)")
    os.execv(sys.executable, [sys.executable, str(RUN_PY), *args])
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``ftlab <command> [arguments]``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "--version":
        print(f"ftlab {__version__}")
        return 0
    if command in APP:
        return _run_app(["plan_only=true", *rest] if command == "plan" else rest)
    if command not in TOOLS:
        valid = ", ".join([*APP, *TOOLS])
        sys.exit(f"ftlab: unknown command {command!r}; valid: {valid} (ftlab --help)")
    module, _ = TOOLS[command]
    return importlib.import_module(module).main(rest, prog=f"ftlab {command}")
