"""Sweep reports from real multiruns: summary, seed aggregation, plots, failures, rebuild at any time."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from ftlab.sweeps.report import main as report_main
from tests.helpers import tiny_overrides
from tests.test_run_py import run_cli

pytestmark = pytest.mark.slow


def sweep_args(tiny_model_dir, tiny_csv, tmp_path):
    return [o for o in tiny_overrides(tiny_model_dir, tiny_csv, tmp_path) if not o.startswith("output_dir")] + [
        "debug=smoke", "logger=csv"]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, path


def test_sweep_with_seeds_writes_summary_aggregates_and_plots(tiny_model_dir, tiny_csv, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "strategy=full,partial", "lr=1e-3,3e-3", "seed=1,2", f"hydra.sweep.dir={sweep}",
                   *sweep_args(tiny_model_dir, tiny_csv, tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_csv(sweep / "summary.csv")
    assert len(rows) == 8 and {r["status"] for r in rows} == {"completed"}
    for row in rows:
        metrics = json.loads((sweep / row["job"] / "metrics.json").read_text())
        assert float(row["test/acc"]) == pytest.approx(metrics["test/acc"])
        assert float(row["trainable_pct"]) == pytest.approx(100 * metrics["params/trainable_fraction"])
        assert row["overrides"] == f"strategy={row['strategy']},lr={row['lr']},seed={row['seed']}"
    seeds = {r["overrides"]: r for r in read_csv(sweep / "summary_seeds.csv")}
    assert set(seeds) == {f"strategy={s},lr={lr}" for s in ("full", "partial") for lr in ("0.001", "0.003")}
    for name, agg in seeds.items():
        strategy, lr = (part.split("=")[1] for part in name.split(","))
        accs = [float(r["test/acc"]) for r in rows if r["strategy"] == strategy and r["lr"] == lr]
        assert int(agg["seeds"]) == 2
        assert float(agg["test/acc mean"]) == pytest.approx(statistics.fmean(accs))
        assert float(agg["test/acc std"]) == pytest.approx(statistics.stdev(accs))
    summary = (sweep / "summary.md").read_text()
    assert "8 jobs (8 completed, 0 failed, 0 running)" in summary and "Mean ± std over seeds" in summary
    for name in ("plot_metric_by_strategy_lr.png", "plot_metric_vs_trainable.png", "plot_metric_vs_train_time.png"):
        assert_png(sweep / name)


def test_failed_job_is_reported_and_the_sweep_exits_non_zero(tiny_model_dir, tiny_csv, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    # lr=1e12 drives the loss to NaN within a few steps: the NaN guard fails that job only.
    proc = run_cli("-m", "lr=1e12,3e-3", f"hydra.sweep.dir={sweep}", "trainer.limit_train_batches=5",
                   *sweep_args(tiny_model_dir, tiny_csv, tmp_path))
    assert proc.returncode != 0
    rows = {r["lr"]: r for r in read_csv(sweep / "summary.csv")}
    assert rows["1000000000000.0"]["status"] == "failed"
    assert rows["1000000000000.0"]["reason"].startswith("FloatingPointError: non-finite training loss nan")
    assert rows["0.003"]["status"] == "completed" and float(rows["0.003"]["test/acc"]) >= 0
    assert (sweep / "1" / "metrics.json").exists()  # the job after the failure still ran

    # An interrupted job (no metrics yet) shows as running; the report rebuilds from the directory alone.
    (sweep / "1" / "metrics.json").unlink()
    for png in sweep.glob("*.png"):
        png.unlink()
    assert report_main([str(sweep)]) == 1  # non-zero: the sweep has a failed job
    rows = {r["job"]: r for r in read_csv(sweep / "summary.csv")}
    assert rows["1"]["status"] == "running" and rows["0"]["status"] == "failed"
    assert "2 jobs (0 completed, 1 failed, 1 running)" in capsys.readouterr().out

    # A job killed while Hydra wrote its .hydra/ files (empty, cut short) must not break the report of the others.
    hydra = sweep / "1" / ".hydra"
    for config, overrides, hydra_yaml in (("", "- lr=[3e-3,\n", "hydra:\n  overrides:\n    task: [\n"),  # unparsable
                                          ("lr: 0.003\n", "- lr=0.003\n- ", "hydra:\n  overrides:\n")):  # parsed, cut
        hydra.joinpath("config.yaml").write_text(config)
        hydra.joinpath("overrides.yaml").write_text(overrides)
        hydra.joinpath("hydra.yaml").write_text(hydra_yaml)
        assert report_main([str(sweep)]) == 1
        rows = {r["job"]: r for r in read_csv(sweep / "summary.csv")}
        assert rows["1"]["status"] == "running" and rows["0"]["status"] == "failed"
        assert "2 jobs (0 completed, 1 failed, 1 running)" in capsys.readouterr().out


def test_optuna_search_and_its_report(tiny_model_dir, tiny_csv, tmp_path):
    pytest.importorskip("optuna", minversion="4.5", reason="the optuna extra is not installed")
    sweep = tmp_path / "optuna"
    # seed=2: the sampler's first three trials are partial, head_only, partial (both sides of the conditional space)
    proc = run_cli("hparams_search=optuna", "hydra.sweeper.n_trials=3", "search.max_layers=2", "seed=2",
                   f"hydra.sweep.dir={sweep}", *sweep_args(tiny_model_dir, tiny_csv, tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((sweep / "search.json").read_text())
    assert [t["state"] for t in results["trials"]] == ["COMPLETE"] * 3 and results["front"]
    rows = read_csv(sweep / "summary.csv")
    assert len(rows) == 3 and {r["status"] for r in rows} == {"completed"}
    assert "partial" in {r["strategy"] for r in rows} and {r["strategy"] for r in rows} - {"partial"}
    for row in rows:
        assert row["overrides"].startswith("lr=") and ",strategy=" in row["overrides"]
        assert 1e-5 <= float(row["lr"]) <= 5e-4
        # trainable_layers is searched for partial trials only: the other strategies have no such option
        layers = row.get("strategy.trainable_layers", "")
        assert int(layers) in (1, 2) if row["strategy"] == "partial" else layers == "", row
