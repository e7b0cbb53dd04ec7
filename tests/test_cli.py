"""The ``ftlab`` command: every tool behind one entry point, each with its --help; run.py and python -m ftlab.<tool>
keep working."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ftlab.cli import APP, TOOLS, main
from tests.helpers import ROOT, tiny_overrides


def ftlab(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``ftlab args`` in-process: (exit status, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (print(done.code, file=sys.stderr) or 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_every_command_and_a_bare_call_is_a_usage_error(capsys):
    code, out, _ = ftlab(capsys, "--help")
    assert code == 0
    listed = [line.split()[0] for line in out.split("commands:\n")[1].split("\n\n")[0].splitlines()]
    assert listed == ["train", "plan", "report", "predict", "export", "serve"] == [*APP, *TOOLS]
    assert ftlab(capsys)[0] == 2
    code, _, err = ftlab(capsys, "trian")
    assert code == 1 and err.strip() == (
        "ftlab: unknown command 'trian'; valid: train, plan, report, predict, export, serve (ftlab --help)")


@pytest.mark.parametrize("tool", list(TOOLS))
def test_each_tool_has_its_help_and_one_line_errors_under_its_command_name(capsys, tool):
    code, out, _ = ftlab(capsys, tool, "--help")
    assert code == 0 and out.startswith(f"usage: ftlab {tool} ")
    code, out, err = ftlab(capsys, tool, "--no-such-option")
    assert code == 2 and out == ""
    assert err.startswith(f"ftlab {tool}: ") and err.strip().endswith(f"see ftlab {tool} --help")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_python_m_entry_points_keep_their_names():
    for module, prog in (("ftlab.report", "ftlab.report"), ("ftlab.onnx_export", "ftlab.onnx_export")):
        bad = subprocess.run([sys.executable, "-m", module, "--no-such-option"], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
        assert bad.returncode == 2 and bad.stderr.startswith(f"{prog}: ")


@pytest.mark.slow
def test_plan_is_run_py_with_plan_only(tiny_model_dir, tiny_csv, tmp_path):
    """``ftlab plan`` writes the same plan.json as ``python run.py plan_only=true`` and trains nothing."""
    plans = {}
    # python -m ftlab is the console script's main without the installed wrapper; both call ftlab.cli.main.
    for name, command in (("ftlab", [sys.executable, "-m", "ftlab", "plan"]),
                          ("run.py", [sys.executable, "run.py", "plan_only=true"])):
        out = tmp_path / name
        overrides = [o for o in tiny_overrides(tiny_model_dir, tiny_csv, out) if not o.startswith("output_dir")]
        proc = subprocess.run([*command, *overrides, f"hydra.run.dir={out}"], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "plan (saved to" in proc.stdout and not (out / "metrics.json").exists()
        plans[name] = json.loads((out / "plan.json").read_text())
    assert plans["ftlab"] == plans["run.py"]
    # The tiny BERT by hand: embeddings 35*32 + 64*32 + 2*32 + 64 = 3,296; two blocks of 6,789; pooler 1,056 and a
    # 3-class classifier 99: 18,029, all trainable under the default strategy=full.
    assert plans["ftlab"]["params"]["total"] == plans["ftlab"]["params"]["trainable"] == 18_029
