"""Against a real one-node SLURM cluster (tests/slurm/cluster.sh): launches through hydra/launcher=slurm and a
requeue on SIGUSR2 (submitit's pre-timeout / preemption signal) that resumes from the job's checkpoint and W&B run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ftlab.sweeps.sweep_dir import read_curve
from ftlab.tracking.identity import group_name
from tests.helpers import ROOT, tiny_overrides, wandb_run

pytestmark = [pytest.mark.slow, pytest.mark.slurm]
DAEMONS = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "sacctmgr")


def cluster(nodes: int):
    missing = [d for d in (*DAEMONS, *(("ip", "nsenter", "unshare") if nodes > 1 else ())) if shutil.which(d) is None]
    if os.geteuid() != 0 or missing:
        pytest.skip("needs root and Debian's slurm-wlm slurmdbd munge mariadb-server "
                    f"(missing: {', '.join(missing) or 'root'}); .ci/run installs them")
    directory = tempfile.mkdtemp(prefix="ftlab-slurm-", dir="/tmp")  # munge must traverse it: not pytest's 0700 tmp
    script = ROOT / "tests" / "slurm" / "cluster.sh"
    subprocess.run(["bash", str(script), "start", directory, str(nodes)], check=True, capture_output=True,
                   timeout=180)
    env = dict(os.environ, SLURM_CONF=f"{directory}/slurm.conf")
    try:
        yield env
    finally:
        subprocess.run(["bash", str(script), "stop", directory], check=False, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm_env():
    yield from cluster(1)


@pytest.fixture(scope="module")
def two_nodes_env():
    """Two SLURM nodes, node1 and node2, each slurmd in its own network namespace and hostname."""
    yield from cluster(2)


def launcher_args(sweep: Path) -> list[str]:
    return ["-m", "hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}"]


def job_args(model_dir, csv, tmp_path) -> list[str]:
    return [o for o in tiny_overrides(model_dir, csv, tmp_path) if not o.startswith("output_dir")]


def test_two_job_sweep_through_slurm(slurm_env, tiny_model_dir, tiny_csv, tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "run.py", *launcher_args(sweep), "strategy=full,partial", "debug=smoke",
                           *job_args(tiny_model_dir, tiny_csv, tmp_path)],
                          cwd=ROOT, env=slurm_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job, strategy in (("0", "full"), ("1", "partial")):
        assert json.loads((sweep / job / "metrics.json").read_text())["strategy"] == strategy
    slurm_jobs = {p.name for p in (sweep / ".submitit").iterdir() if p.is_dir() and "_" in p.name}
    assert len(slurm_jobs) == 2 and len({j.split("_")[0] for j in slurm_jobs}) == 1  # one array, 2 tasks
    assert "2 jobs (2 completed, 0 failed, 0 running)" in (sweep / "summary.md").read_text()


def test_search_trials_run_in_parallel_on_slurm_and_report_to_the_study(slurm_env, tiny_model_dir, tiny_csv,
                                                                        tmp_path):
    optuna = pytest.importorskip("optuna", minversion="4.5", reason="the optuna extra is not installed")
    sweep = tmp_path / "search"
    args = [a for a in launcher_args(sweep) if a != "-m"]  # hparams_search=optuna is a multirun by itself
    proc = subprocess.run([sys.executable, "run.py", "hparams_search=optuna", *args, "hydra.sweeper.n_trials=2",
                           "hydra.sweeper.n_jobs=2", "search.max_layers=2", "trainer.max_steps=4",
                           *job_args(tiny_model_dir, tiny_csv, tmp_path)],
                          cwd=ROOT, env=slurm_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    slurm_jobs = {p.name for p in (sweep / ".submitit").iterdir() if p.is_dir() and "_" in p.name}
    assert len(slurm_jobs) == 2 and len({j.split("_")[0] for j in slurm_jobs}) == 1  # both trials in one array
    study = optuna.load_study(study_name="ftlab", storage=f"sqlite:///{sweep / 'study.db'}")
    for trial in study.trials:  # each SLURM job reported its validation points (its curve.csv) into the study
        curve = read_curve(sweep / str(trial.number) / "curve.csv")
        assert trial.state.name == "COMPLETE" and len(curve) >= 2
        assert trial.intermediate_values == {int(p["step"]): pytest.approx(p["val/acc"]) for p in curve}
        metrics = json.loads((sweep / str(trial.number) / "metrics.json").read_text())
        assert trial.value == pytest.approx(metrics["val/acc"])


def test_a_race_launches_each_round_as_one_slurm_array(slurm_env, tiny_model_dir, tiny_csv, tmp_path):
    """hparams_search=compare under hydra/launcher=slurm: round 0 (each method over its grid) is one array."""
    sweep = tmp_path / "race"
    args = [a for a in launcher_args(sweep) if a != "-m"]  # hparams_search=compare is a multirun by itself
    proc = subprocess.run([sys.executable, "run.py", "hparams_search=compare", *args,
                           "hydra.sweeper.methods=['full strategy.lr_grid=[2e-4]','head_only strategy.lr_grid=[1e-2]']",
                           "hydra.sweeper.max_seeds=1", "trainer.max_steps=4",
                           *job_args(tiny_model_dir, tiny_csv, tmp_path)],
                          cwd=ROOT, env=slurm_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    slurm_jobs = {p.name for p in (sweep / ".submitit").iterdir() if p.is_dir() and "_" in p.name}
    assert len(slurm_jobs) == 2 and len({j.split("_")[0] for j in slurm_jobs}) == 1  # one array, 2 tasks
    race = json.loads((sweep / "race.json").read_text())
    assert race["jobs"] == 2 and race["stopped"] == "max_seeds (1) reached"
    assert [m["lr"] for m in race["methods"]] == [2e-4, 1e-2]
    assert all((sweep / str(n) / "metrics.json").is_file() for n in (0, 1))


def signal_first_job(launch: subprocess.Popen, job_dir: Path, env: dict, started: str = "plan.json",
                     wait: float = 3) -> tuple[str, str]:
    """Once the first job trains (``started`` is in its directory, then ``wait`` seconds), send its SLURM job SIGUSR2
    (submitit's pre-timeout signal), release the requeued job at once, and wait for the launch to end; returns the
    SLURM job id and the launch's stderr."""
    try:
        deadline = time.time() + 120
        while not (job_dir / started).exists() and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(wait)  # now inside fit
        queue = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=env, capture_output=True, text=True).stdout
        running = [line.split()[0] for line in queue.splitlines() if line.endswith("RUNNING")]
        assert running, queue
        first = sorted(running)[0]  # array task <id>_0
        subprocess.run(["scancel", "--signal=USR2", first], env=env, check=True)
        # SLURM holds a requeued batch job back for 2 minutes (BeginTime); release it at once to keep the test short.
        for _ in range(120):
            state = subprocess.run(["squeue", "-h", "-j", first, "-o", "%T %r"], env=env,
                                   capture_output=True, text=True).stdout.strip()
            if state.startswith("PENDING BeginTime"):
                subprocess.run(["scontrol", "update", f"JobId={first}", "StartTime=now"], env=env)
                break
            time.sleep(0.5)
        _, err = launch.communicate(timeout=400)
    finally:
        if launch.poll() is None:
            launch.kill()
    return first, err


def test_two_node_ddp_job_equals_two_processes_on_one_node(two_nodes_env, tiny_model_dir, tiny_csv, tmp_path):
    sweep = tmp_path / "sweep"
    job = ["trainer=ddp_cpu", "lr=3e-3", "trainer.max_epochs=2", *job_args(tiny_model_dir, tiny_csv, tmp_path)]
    proc = subprocess.run([sys.executable, "run.py", *launcher_args(sweep), "trainer.devices=1",
                           "trainer.num_nodes=2", *job],
                          cwd=ROOT, env=two_nodes_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.out"))
    # one task per node, SLURM's environment telling each its rank
    assert "hostname=node1, local_rank=0(1), node=0(2), global_rank=0(2)" in logs, logs[-2000:]
    assert "hostname=node2, local_rank=0(1), node=1(2), global_rank=1(2)" in logs, logs[-2000:]
    local = tmp_path / "local"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    proc = subprocess.run([sys.executable, "run.py", f"hydra.run.dir={local}", *job],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    multi, single = (json.loads((d / "metrics.json").read_text()) for d in (sweep / "0", local))
    assert multi["global_step"] == single["global_step"] == 6  # 48 examples, 2 ranks x 8, 2 epochs
    numbers = [k for k, v in single.items() if k.startswith(("val/", "test/")) and isinstance(v, float)]
    assert len(numbers) > 10 and single["val/loss"] < 1.05  # it learned something: a comparison that can fail
    assert {k: multi[k] for k in numbers} == pytest.approx({k: single[k] for k in numbers}, abs=1e-6)
    assert read_curve(sweep / "0" / "curve.csv") == [
        {**p, "train_time_s": pytest.approx(p["train_time_s"], abs=1e9)} for p in read_curve(local / "curve.csv")]


def test_two_node_job_requeues_and_resumes_like_one_node(two_nodes_env, tiny_model_dir, tiny_csv, tmp_path):
    sweep = tmp_path / "sweep"
    launch = subprocess.Popen(
        [sys.executable, "run.py", *launcher_args(sweep), "trainer=ddp_cpu", "trainer.devices=1", "trainer.num_nodes=2",
         "trainer.max_epochs=8", "callbacks.early_stopping=null", "+callbacks.slow._target_=tests.helpers.SlowSteps",
         "+callbacks.slow.seconds=0.3", *job_args(tiny_model_dir, tiny_csv, tmp_path)],
        cwd=ROOT, env=two_nodes_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job_dir = sweep / "0"
    # Signalled after its first validation (connecting the ranks across the nodes takes a while first).
    first, err = signal_first_job(launch, job_dir, two_nodes_env, started="curve.csv", wait=0.5)
    assert launch.returncode == 0, err[-3000:]
    metrics = json.loads((job_dir / "metrics.json").read_text())
    assert metrics["resumed_from"] == str(job_dir / "checkpoints" / "last.ckpt")
    assert metrics["global_step"] == 8 * 3  # 3 steps per epoch on 2 ranks: the requeued run finished the rest
    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob(f"{first}/*_log.*"))
    assert "Caught signal SIGUSR2" in logs and "requeu" in logs.lower(), logs[-2000:]
    assert logs.count("hostname=node2") >= 2  # both runs spanned both nodes


def test_sigusr2_requeues_and_resumes_from_last_checkpoint(slurm_env, tiny_model_dir, tiny_csv, tmp_path):
    sweep = tmp_path / "sweep"
    # 4 epochs x 6 steps, 0.3 s per step: long enough to signal it while it trains.
    launch = subprocess.Popen(
        [sys.executable, "run.py", *launcher_args(sweep), "strategy=full,partial", "trainer.max_epochs=4",
         "callbacks.early_stopping=null", "+callbacks.slow._target_=tests.helpers.SlowSteps",
         "+callbacks.slow.seconds=0.3", *job_args(tiny_model_dir, tiny_csv, tmp_path), "logger=wandb"],
        cwd=ROOT, env=slurm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job_dir = sweep / "0"
    # Signalled once it has trained and validated (curve.csv), not a fixed time after start: on a loaded machine
    # the job could still be loading then, with nothing to resume from.
    first, err = signal_first_job(launch, job_dir, slurm_env, started="curve.csv", wait=0.5)
    assert launch.returncode == 0, err[-3000:]
    metrics = json.loads((job_dir / "metrics.json").read_text())
    assert metrics["resumed_from"] == str(job_dir / "checkpoints" / "last.ckpt")
    assert metrics["global_step"] == 4 * 6  # the requeued run finished the remaining steps, no more
    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob(f"{first}/*_log.err"))
    assert "Caught signal SIGUSR2" in logs and "requeu" in logs.lower(), logs[-2000:]
    other = json.loads((sweep / "1" / "metrics.json").read_text())
    assert other["resumed_from"] is None and other["global_step"] == 24

    # W&B: the requeued job continued the same run (id, name and group from the job directory and the sweep);
    # only its second part carries the final test metrics. The other job is a different run of the same group.
    first, second = (wandb_run(f) for f in sorted(job_dir.glob("wandb/offline-run-*/run-*.wandb")))
    assert first[0].run_id == second[0].run_id
    assert first[0].display_name == second[0].display_name == "strategy=full"
    assert first[0].run_group == second[0].run_group == group_name(sweep)
    assert "test/acc" not in first[1] and second[1]["test/acc"] == pytest.approx(metrics["test/acc"])
    [(run, _)] = [wandb_run(f) for f in (sweep / "1").glob("wandb/offline-run-*/run-*.wandb")]
    assert run.run_id != first[0].run_id and run.run_group == group_name(sweep)
