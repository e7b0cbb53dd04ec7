"""Faults a cluster job meets: SIGKILL (no chance to save), a full disk while checkpointing, a killed cache build."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys

import pytest
import torch

from ftlab.core.checks import FtlabError
from ftlab.train import train
from tests.helpers import compose, tiny_overrides
from tests.test_run_py import run_cli

# 48 training examples at batch 8: 6 steps per epoch, 12 in all; the full training state is saved every 3 steps.
RUN = ["trainer.max_epochs=2", "lr=3e-3", "callbacks.early_stopping=null", "trainer.deterministic=true",
       "callbacks.last_checkpoint.every_n_train_steps=3"]


def _global_step(path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


# Validations at steps 3, 6, 9 and 12 (curve_points=4 over 2 epochs): a periodic save due at step 3 waits for that
# step's validation, one due at step 6 for the end of the epoch.
@pytest.mark.slow
@pytest.mark.parametrize("kill_step,saved_step", [(4, 3), (7, 6)])
def test_sigkill_resumes_from_the_last_periodic_checkpoint(tiny_model_dir, tiny_csv, tmp_path, kill_step, saved_step):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    base = tiny_overrides(tiny_model_dir, tiny_csv, whole, *RUN)
    assert run_cli(*base, f"hydra.run.dir={whole}").returncode == 0

    # SIGKILL during a step: nothing is saved on the way out; the last periodic checkpoint is what is left.
    killer = ["+callbacks.killer._target_=tests.helpers.SignalAt", f"+callbacks.killer.step={kill_step}",
              f"+callbacks.killer.signum={int(signal.SIGKILL)}"]
    cut_args = [a.replace(str(whole), str(cut)) for a in base] + killer
    proc = run_cli(*cut_args, f"hydra.run.dir={cut}")
    assert proc.returncode == -signal.SIGKILL
    last = cut / "checkpoints" / "last.ckpt"
    assert _global_step(last) == saved_step and not (cut / "metrics.json").exists()

    proc = run_cli(f"resume={cut}", f"hydra.run.dir={tmp_path / 'resume-invocation'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (json.loads((job / "metrics.json").read_text()) for job in (whole, cut))
    assert b["resumed_from"] == str(last) and b["global_step"] == a["global_step"] == 12
    for key in ("val/loss", "test/loss", "test/acc"):
        assert b[key] == a[key], key  # only the steps after the save were lost, and they were recomputed exactly
    curves = [[(r["step"], r["val/acc"]) for r in csv.DictReader(open(job / "curve.csv"))] for job in (whole, cut)]
    assert curves[0] == curves[1] and [int(step) for step, _ in curves[0]] == [3, 6, 9, 12]


@pytest.mark.slow
def test_full_disk_while_checkpointing_fails_clearly_and_keeps_the_previous_checkpoint(
        tiny_model_dir, tiny_csv, tmp_path, small_disk):
    probe = tmp_path / "probe"
    train(compose(tiny_overrides(tiny_model_dir, tiny_csv, probe, *RUN, "callbacks.model_checkpoint=null",
                                 "keep_checkpoints=all")))  # the probe's last.ckpt is its size
    size = (probe / "checkpoints" / "last.ckpt").stat().st_size
    # Room for one full checkpoint and the small plan, not for a second copy written beside it.
    disk = small_disk(size * 3 // 2)
    out = disk / "job"
    with pytest.raises(FtlabError) as err:
        train(compose(tiny_overrides(tiny_model_dir, tiny_csv, out, *RUN, "callbacks.model_checkpoint=null")))
    message = str(err.value)
    assert message == (f"{out / 'checkpoints' / 'last.ckpt'}: the checkpoint could not be written (No space left on "
                       "device); any previous checkpoint there is intact: free space or fix permissions, then resume")
    assert _global_step(out / "checkpoints" / "last.ckpt") == 3  # the previous one, whole
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt"]  # no half-written file
    assert not (out / "metrics.json").exists() and not (out / "model").exists()


@pytest.mark.slow
def test_killed_cache_build_leaves_nothing_a_later_run_trusts(tiny_model_dir, tiny_csv, tmp_path):
    """A cache build killed half-way (SIGKILL while writing the Arrow files) is rebuilt by the next run."""
    cache = tmp_path / "cache"
    script = f"""
import os, signal, datasets
from ftlab.data.datamodule import FineTuneData
from ftlab.model.loading import load_tokenizer
real = datasets.DatasetDict.save_to_disk
def save_then_die(self, path, **kw):
    real(self, path, **kw)  # the files are there, in the build directory, but the build never finishes
    os.kill(os.getpid(), signal.SIGKILL)
datasets.DatasetDict.save_to_disk = save_then_die
cfg = dict(source="files", path={str(tiny_csv)!r}, text_column="text", label_column="label", val_size=0.1,
           test_size=0.1, cache_dir={str(cache)!r})
FineTuneData(cfg, load_tokenizer({{"pretrained_model_name_or_path": {str(tiny_model_dir)!r}}}), 16, 8).prepare_data()
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    built = list((cache / "data").iterdir())
    assert built and all(p.name.startswith(".tmp-") for p in built)  # only the abandoned build directory

    from ftlab.data.datamodule import FineTuneData
    from ftlab.model.loading import load_tokenizer

    cfg = dict(source="files", path=str(tiny_csv), text_column="text", label_column="label", val_size=0.1,
               test_size=0.1, cache_dir=str(cache))
    data = FineTuneData(cfg, load_tokenizer({"pretrained_model_name_or_path": str(tiny_model_dir)}), 16, 8)
    assert not data.cache_path.exists()  # the killed build never published a cache under the key
    data.prepare_data()
    data.setup()
    assert data.split_sizes == {"train": 48, "validation": 6, "test": 6}
