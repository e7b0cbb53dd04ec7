"""A job's identity inside a sweep: the W&B group, the job label, the run id, each written out by hand."""

from __future__ import annotations

import hashlib

from ftlab.tracking.identity import group_name, job_label, run_id


def test_the_group_is_the_sweep_directory_below_outputs_made_safe():
    assert group_name("/x/outputs/multirun/2024-01-01/12-00-00") == "multirun_2024-01-01_12-00-00"
    assert group_name("/tmp/a/b/c") == "a_b_c"  # no outputs/: the last three parts
    assert group_name("/w/outputs/multirun/my sweep:v2/0") == "multirun_my_sweep_v2_0"
    assert group_name("/w/outputs/" + "d" * 200) == "d" * 120  # W&B caps group names; the end is the unique part


def test_the_label_is_the_swept_overrides_in_the_sweeps_order():
    overrides = ["lr=2e-05", "seed=1", "+strategy=partial", "logger=csv"]
    assert job_label(overrides, ["strategy", "lr"]) == "strategy=partial,lr=2e-05"
    assert job_label(overrides, ["optimizer.weight_decay"]) == ""


def test_the_run_id_is_stable_for_a_job_directory():
    expected = hashlib.sha1(b"/runs/sweep/3").hexdigest()[:16]
    assert run_id("/runs/sweep/3") == run_id("/runs/sweep/./3") == expected
    assert run_id("/runs/sweep/4") != expected


def test_a_moved_job_keeps_the_run_it_began(tmp_path):
    """resume= of a job directory moved elsewhere continues its W&B run, whose id W&B wrote into the folder name."""
    job = tmp_path / "moved"
    (job / "wandb" / "offline-run-20261203_120000-0123456789abcdef").mkdir(parents=True)
    (job / "wandb" / "latest-run").symlink_to(job / "wandb" / "offline-run-20261203_120000-0123456789abcdef")
    assert run_id(job) == "0123456789abcdef"
    (job / "wandb" / "run-20261203_130000-0123456789abcdef").mkdir()  # the same run, synced: still one id
    assert run_id(job) == "0123456789abcdef"
    (job / "wandb" / "run-20261203_140000-fedcba9876543210").mkdir()  # two runs: no guess, the path decides
    assert run_id(job) == hashlib.sha1(str(job).encode()).hexdigest()[:16]
