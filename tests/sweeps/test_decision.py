"""The decision part of the sweep report on a synthetic sweep with known numbers: fronts, paired intervals, text."""

from __future__ import annotations

import json

import pytest
import yaml

from ftlab.sweeps.configurations import configurations, pareto_front
from ftlab.sweeps.paired import paired
from ftlab.sweeps.report import build_report
from ftlab.sweeps.report import main as report_main
from ftlab.sweeps.sweep_dir import collect

# strategy: (label, test/acc for seeds 1, 2, 3, train time s, peak memory MiB, trainable fraction)
JOBS = {
    "full": ("full", (0.905, 0.92, 0.935), 100.0, 1000.0, 1.0),
    "partial": ("partial", (0.91, 0.915, 0.935), 50.0, 600.0, 0.10),
    "lora": ("lora(r=8)", (0.925, 0.90, 0.945), 70.0, 700.0, 0.015),
    "head_only": ("head_only", (0.80, 0.81, 0.82), 20.0, 500.0, 0.001),
}


def write_sweep(directory, jobs):
    """A finished sweep over ``strategy`` and ``seed`` with the given numbers, as Hydra and ftlab leave it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"overrides": {"task": [f"strategy={','.join(jobs)}", "seed=1,2,3"]}}}))
    job = 0
    for strategy, (label, accs, time_s, memory, fraction) in jobs.items():
        for seed, acc in zip((1, 2, 3), accs):
            d = directory / str(job)
            (d / ".hydra").mkdir(parents=True)
            (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"strategy={strategy}", f"seed={seed}"]))
            (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"strategy": {"name": strategy},
                                                                     "monitor": "val/acc"}))
            # Two validations: at half the training time (5 points lower) and at the end.
            half, end = {"full": 50, "partial": 25, "lora": 35, "head_only": 10}[strategy], time_s + seed
            (d / "curve.csv").write_text("step,epoch,samples,train_time_s,flops,val/acc\n"
                                         f"5,0,{10 * half},{half},,{acc - 0.05}\n10,0,{10 * end},{end},,{acc}\n")
            (d / "metrics.json").write_text(json.dumps({
                "monitor": "val/acc", "val/acc": acc, "test/acc": acc, "train_time_s": time_s + seed,
                "peak_memory_mb": memory, "params/trainable_fraction": fraction, "strategy_label": label}))
            job += 1
    return directory


@pytest.fixture
def sweep(tmp_path):
    return write_sweep(tmp_path, JOBS)


def test_fronts_and_paired_intervals_are_the_known_ones(sweep):
    rows, keys = collect(sweep)
    configs = {c.name: c for c in configurations(rows, keys, "test/acc")}
    assert set(configs) == {f"strategy={s}" for s in JOBS}
    full, partial, lora, head = (configs[f"strategy={s}"] for s in JOBS)
    assert lora.mean == pytest.approx(0.92333333) and full.mean == pytest.approx(0.92)
    assert full.costs["train_time_s"] == pytest.approx(102.0)  # mean over seeds of 100 + seed
    # Full is beaten by LoRA on quality and on every cost: dominated everywhere.
    assert [c.label for c in pareto_front(list(configs.values()), "train_time_s", "test/acc")] == [
        "head_only", "partial", "lora(r=8)"]
    assert [c.label for c in pareto_front(list(configs.values()), "peak_memory_mb", "test/acc")] == [
        "head_only", "partial", "lora(r=8)"]
    assert [c.label for c in pareto_front(list(configs.values()), "trainable_pct", "test/acc")] == [
        "head_only", "lora(r=8)"]
    # LoRA - full per seed: 0.02, -0.02, 0.01 -> mean 0.00333, sd 0.02082; t(0.975, 2) = 4.3027:
    # half-width 4.3027 * 0.02082 / sqrt(3) = 0.05171.
    p = paired(lora, full)
    assert (p.n, p.mean) == (3, pytest.approx(1 / 300))
    assert (p.low, p.high) == (pytest.approx(-0.048380, abs=1e-5), pytest.approx(0.055047, abs=1e-5))
    assert not p.distinguishable
    assert p.seeds_needed == 723  # (4.3027 * 0.02082 / 0.00333)^2 = 722.2
    # LoRA - head_only: 0.125, 0.09, 0.125 -> mean 0.11333, sd 0.020207, half 0.050197: clearly better.
    q = paired(lora, head)
    assert q.distinguishable and (q.low, q.high) == (pytest.approx(0.063136, abs=1e-5),
                                                     pytest.approx(0.16353, abs=1e-4))


def test_recommendation_claims_only_what_the_intervals_support(sweep, capsys):
    assert report_main([str(sweep), "--max-time", "60", "--max-memory", "0.5GB"]) == 0
    summary = (sweep / "summary.md").read_text()
    recommendation = [line.removeprefix("- ") for line in
                      summary.split("## Recommendation\n\n")[1].split("\n\n")[0].splitlines()]
    assert recommendation[0].startswith("Chosen on val/acc (each job's monitored validation metric at its best "
                                        "checkpoint)")
    assert recommendation[1] == ("Best on validation: **lora(r=8)** (`strategy=lora`): test/acc 0.9233 ± 0.02255 "
                                 "over 3 seed(s) (val/acc 0.9233).")
    assert recommendation[2].startswith("No difference detected at 3 seeds between lora(r=8) and full (mean "
                                        "difference 0.003333, 95% paired t interval [-0.04838, 0.05504], n=3); "
                                        "about 723 seeds would resolve")
    assert recommendation[3].startswith("Probabilities from a paired bootstrap over the 3 seeds every method ran")
    # Partial (0.92, within 1 point of 0.9233) is the cheapest close one, and is not distinguishable from LoRA.
    assert recommendation[4].startswith("Cheapest within 1 point(s) of the best on validation: **partial** "
                                        "(`strategy=partial`): test/acc 0.92 ± 0.01323 over 3 seed(s) (val/acc 0.92), "
                                        "in 72% of lora(r=8)'s train time; on test/acc it is within 1 point(s) of "
                                        "the best with probability 0.7")
    assert "No difference detected at 3 seeds between lora(r=8) and partial" in recommendation[4]
    assert recommendation[5].startswith("Best within 60 s of training: **partial**")
    assert recommendation[6] == "No configuration fits within 476.8 MiB of peak memory."
    assert ("- train time (s): head_only (val/acc 0.81, test/acc 0.81 at 22); partial (val/acc 0.92, test/acc 0.92 at "
            "52); lora(r=8) (val/acc 0.9233, test/acc 0.9233 at 72)") in summary
    table = summary.split("## Against the best on shared seeds (test/acc; ranked by val/acc)")[1]
    assert ("| head_only | strategy=head_only | 3 | 0.81 | 0.81 | 0.01 | 0.1133 | [0.06314, 0.1635] | yes | 0.00 |"
            in table)
    assert "| full | strategy=full | 3 | 0.92 | 0.92 | 0.015 | 0.003333 | [-0.04838, 0.05504] | no |" in table
    png = (sweep / "plot_pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and "![plot_pareto](plot_pareto.png)" in summary


@pytest.mark.parametrize("option,value,problem", [
    ("--max-memory", "lots", "'lots' is not a memory size: a number > 0 with an optional unit"),
    ("--max-memory", "0GB", "'0GB' is not a memory size"),
    ("--tolerance", "-1", "'-1' is not a number >= 0"),
    ("--tolerance", "nan", "'nan' is not a number >= 0"),
    ("--max-time", "0", "'0' is not a number > 0"),
])
def test_a_bad_budget_or_tolerance_is_one_line(sweep, capsys, option, value, problem):
    with pytest.raises(SystemExit) as exit_:
        report_main([str(sweep), option, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"ftlab.report: argument {option}: {problem}" in err and len(err.strip().splitlines()) == 1


def test_several_sweeps_compete_in_one_report(tmp_path):
    first = write_sweep(tmp_path / "freezing", {k: JOBS[k] for k in ("full", "partial")})
    second = write_sweep(tmp_path / "adapters", {k: JOBS[k] for k in ("lora", "head_only")})
    assert report_main([str(first), str(second), "--out", str(tmp_path / "joint"), "--no-wandb"]) == 0
    summary = (tmp_path / "joint" / "summary.md").read_text()
    # The same recommendation as the one sweep holding all four (test above), jobs named by their sweep.
    assert "- Best on validation: **lora(r=8)** (`sweep=adapters,strategy=lora`)" in summary
    assert "| adapters/0 | strategy=lora,seed=1 | completed |" in summary
    assert not (first / "summary.md").exists()  # the joint report goes to --out only
    with pytest.raises(SystemExit, match="several sweep directories: give --out"):
        report_main([str(first), str(second)])


def test_budget_section_ranks_by_best_so_far_at_fractions_of_the_largest_budget(sweep):
    build_report(sweep)
    summary = (sweep / "summary.md").read_text()
    section = summary.split("## Budget: val/acc while training")[1]
    # Largest job: full, seed 3, 103 s. By 25.75 s only partial (25 s) and head_only (10 s) have validated.
    assert ("- At 25% of the largest job's training time (s, validation excluded) (25.75): partial 0.87; "
            "head_only 0.81") in section  # head_only has finished (21-23 s)
    assert ("- At 100% of the largest job's training time (s, validation excluded) (103): lora(r=8) 0.9233; "
            "full 0.92; partial 0.92; head_only 0.81") in section
    assert "- At 25% of the largest job's training samples seen (257.5): partial 0.87; head_only 0.81" in section
    assert (sweep / "plot_budget_curves.png").read_bytes()[:4] == b"\x89PNG"
