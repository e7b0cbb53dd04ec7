"""The command line exactly as users type it (subprocesses): the 4-job sweep and config errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from ftlab.tracking.identity import group_name
from tests.helpers import ROOT, finished_wandb_records, tiny_overrides

pytestmark = pytest.mark.slow


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_card_sweep_gives_four_jobs(tiny_model_dir, tiny_csv, tmp_path):
    sweep = tmp_path / "sweep"
    base = [o for o in tiny_overrides(tiny_model_dir, tiny_csv, tmp_path) if not o.startswith(("output_dir", "logger"))]
    proc = run_cli("-m", "strategy=full,partial", "lr=1e-5,2e-5", "debug=smoke", "logger=wandb",
                   f"hydra.sweep.dir={sweep}", *base)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    seen, run_ids, groups = set(), set(), set()
    for job in jobs:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        metrics = json.loads((job / "metrics.json").read_text())
        combo = (config["strategy"]["name"], config["lr"], metrics["lr"])  # metrics: the lr the optimizer trained with
        seen.add(combo)
        swept = [o for o in overrides if o.startswith(("strategy=", "lr="))]
        assert swept == [f"strategy={combo[0]}", f"lr={combo[1]}"]
        strategy = combo[0]
        assert metrics["strategy"] == strategy
        assert (metrics["params/trainable"] == metrics["params/total"]) == (strategy == "full")
        # a sweep's job keeps no checkpoint once it succeeded (keep_checkpoints: none in a sweep); model/ is the result
        assert (job / "model" / "config.json").exists() and not (job / "checkpoints").exists()
        assert metrics["keep_checkpoints"] == "none"
        runs = list((job / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(runs) == 1  # one W&B run per job, inside the job's directory
        records = finished_wandb_records(runs[0])
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        run_ids.add(run.run_id)
        groups.add(run.run_group)
        assert run.display_name == f"strategy={combo[0]},lr={combo[1]:g}"  # the swept overrides
        assert run.job_type == "train" and list(run.tags) == ["ftlab", "text_classification", strategy]
        summary = {}
        for r in records:
            if r.WhichOneof("record_type") == "summary":
                summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.summary.update})
        assert summary["test/acc"] == pytest.approx(metrics["test/acc"])
        assert summary["params/trainable"] == metrics["params/trainable"]
    assert seen == {(s, lr, lr) for s in ("full", "partial") for lr in (1e-5, 2e-5)}
    assert len(run_ids) == 4
    assert groups == {group_name(sweep)}  # the whole sweep in one W&B group

    # The sweep report is a run of its own in the same group: the table, the plots, the recommendation.
    [report_file] = list((sweep / "wandb").glob("offline-run-*/run-*.wandb"))
    records = finished_wandb_records(report_file)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert (run.run_group, run.job_type, run.display_name) == (group_name(sweep), "report", "sweep report")
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.summary.update})
    assert summary["recommendation"].startswith("Chosen on val/acc") and "\nBest on validation: **" in summary[
        "recommendation"]
    assert summary["recommendation"].splitlines()[0] in (sweep / "summary.md").read_text()
    assert summary["report/summary/_type"] == "table-file" and summary["report/summary/nrows"] == 4
    assert summary["report/plot_pareto/_type"] == "image-file"


def test_config_errors_exit_non_zero_with_one_message(tiny_model_dir, tiny_csv, tmp_path):
    # The settings' problems all at once (the first round, before torch loads)...
    proc = run_cli(*tiny_overrides(tiny_model_dir, tiny_csv, tmp_path), "strategy=partial",
                   "strategy.trainable_layers=7", "batch_size=-2", "lr=0")
    assert proc.returncode == 1
    assert "ftlab: 2 problem(s) in the config:" in proc.stderr
    assert "batch_size=-2: must be a positive int" in proc.stderr and "lr=0: must be a positive float" in proc.stderr
    assert "Traceback" not in proc.stderr
    # ... then, once they are fixed, what needs the model's architecture (the second round).
    proc = run_cli(*tiny_overrides(tiny_model_dir, tiny_csv, tmp_path), "strategy=partial",
                   "strategy.trainable_layers=7")
    assert proc.returncode == 1
    assert "strategy.trainable_layers=7: the model has only 2 layers; valid: -2..2" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("args", [("hydra.run.dir={disk}/job",), ("-m", "hydra.sweep.dir={disk}/sweep", "lr=1,2"),
                                  ()])
def test_a_read_only_job_directory_is_one_line_before_hydra_creates_it(args, small_disk, tmp_path):
    """Hydra creates the job's directory before ftlab runs, with a traceback when it cannot; run.py says it first.
    Without an override, Hydra's default (outputs/ under the working directory) is the one checked."""
    disk = small_disk(4096, read_only=True)
    args = [a.format(disk=disk) for a in args]
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=disk, capture_output=True, text=True,
                          timeout=120)
    key, value = ("hydra.sweep.dir", f"{disk}/sweep") if "-m" in args else (
        "hydra.run.dir", f"{disk}/job" if args else "outputs/")
    assert proc.returncode == 1
    assert proc.stderr == (f"ftlab: {key}={value!r}: {disk} is not a writable directory (read-only file system); "
                           f"choose a writable directory ({key}=<dir>)\n")
