"""Interrupt a run with a real signal, resume it, and get exactly the uninterrupted run's result."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.helpers import tiny_overrides, wandb_run
from tests.test_run_py import run_cli

pytestmark = pytest.mark.slow

# One validation per epoch (curve_points=null): the epoch-boundary case below is about that schedule.
RUN = ["trainer.max_epochs=2", "lr=3e-3", "callbacks.early_stopping=null", "trainer.deterministic=true",
       "curve_points=null"]


# Step 8 of 12 is mid second epoch; step 6 is the first epoch's last batch, where the save waits for that epoch's
# validation and for the callbacks that judge it (the best checkpoint, early stopping), so the resumed run starts the
# second epoch knowing what they decided. The last case stops early: 3 epochs allowed, patience 1, val/acc flat; its
# job directory is moved before it resumes, so the best checkpoint (of epoch 1, never beaten) must be found in the new
# place: Lightning alone would forget it and keep whatever validates next.
@pytest.mark.parametrize("signal_step,stopped_at,extra,moved", [
    (7, 8, [], False),
    # Two validations per epoch (steps 3, 6, 9, 12): the save at step 3 comes before that step's validation.
    (2, 3, ["curve_points=4"], False),
    (5, 6, [], False),
    (5, 6, ["trainer.max_epochs=3", "callbacks.early_stopping.patience=1"], True),
])
def test_sigterm_then_resume_equals_uninterrupted(tiny_model_dir, tiny_csv, tmp_path, signal_step, stopped_at,
                                                  extra, moved):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run = [a for a in RUN if not any(e.startswith((a.split("=")[0] + "=", a.split("=")[0] + ".")) for e in extra)]
    base = tiny_overrides(tiny_model_dir, tiny_csv, whole, *run, *extra) + ["logger=wandb"]
    proc = run_cli(*base, f"hydra.run.dir={whole}")
    assert proc.returncode == 0, proc.stderr[-3000:]

    # SIGTERM during a step: the batch finishes, last.ckpt is saved, the run stops.
    killer = ["+callbacks.killer._target_=tests.helpers.SignalAt", f"+callbacks.killer.step={signal_step}"]
    cut_args = [a.replace(str(whole), str(cut)) for a in base] + killer
    proc = run_cli(*cut_args, f"hydra.run.dir={cut}")
    assert proc.returncode == 1
    assert f"ftlab: interrupted: SIGTERM at step {stopped_at}" in proc.stderr
    assert f"continue with: python run.py resume={cut}" in proc.stderr
    assert (cut / "checkpoints" / "last.ckpt").exists() and not (cut / "metrics.json").exists()
    if moved:
        cut = Path(shutil.move(cut, tmp_path / "moved"))

    proc = run_cli(f"resume={cut}", f"hydra.run.dir={tmp_path / 'resume-invocation'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((cut / "metrics.json").read_text())
    assert b["resumed_from"] == str(cut / "checkpoints" / "last.ckpt")
    assert b["global_step"] == a["global_step"] == 12
    for key in ("val/loss", "val/acc", "test/loss", "test/acc", "test/f1"):
        assert b[key] == a[key], key  # exactly, not approximately
    wa, wb = load_file(whole / "model" / "model.safetensors"), load_file(cut / "model" / "model.safetensors")
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    # The budget curve continues across the interruption: the same points, training time still increasing.
    ca, cb = ([r for r in csv.DictReader(open(j / "curve.csv"))] for j in (whole, cut))
    points = [[(r["step"], r["samples"], r["val/acc"]) for r in rows] for rows in (ca, cb)]
    assert points[0] == points[1]
    assert float(cb[0]["train_time_s"]) < float(cb[1]["train_time_s"])

    # W&B: the resumed process continues the interrupted run (same id, derived from the job directory); only the
    # part that finished has the final test metrics.
    first, second = (wandb_run(f) for f in sorted(cut.glob("wandb/offline-run-*/run-*.wandb")))
    assert first[0].run_id == second[0].run_id and first[0].display_name == second[0].display_name
    assert "test/acc" not in first[1] and second[1]["test/acc"] == pytest.approx(b["test/acc"])


def test_resume_of_a_directory_without_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("lr: 1\n")
    proc = run_cli(f"resume={tmp_path}", f"hydra.run.dir={tmp_path / 'x'}")
    assert proc.returncode == 1
    assert f"resume='{tmp_path}': the job has no checkpoints/last.ckpt to resume from" in proc.stderr
