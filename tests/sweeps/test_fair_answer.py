"""A fair answer on synthetic sweeps with planted truths: validation chooses and test reports, each method at its own
best learning rate (with the grid-edge warning), probabilities checked against an exact enumeration of the paired
bootstrap, pairing on a shared seed without a seed sweep, chance-level and partial-test caveats, distinct labels."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import yaml

from ftlab.sweeps.configurations import configurations
from ftlab.sweeps.evidence import chance_level, evidence_lines
from ftlab.sweeps.methods import lr_warnings, methods
from ftlab.sweeps.probability import bootstrap
from ftlab.sweeps.report import build_report
from ftlab.sweeps.sweep_dir import collect

SEEDS = (1, 2, 3)


def write_jobs(directory, swept, jobs, grids=None):
    """A finished sweep: ``swept`` are the sweep's task overrides; each job is (overrides, seed, metrics);
    ``grids``: strategy name -> its config's lr_grid."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": swept}}}))
    for i, (overrides, seed, metrics) in enumerate(jobs):
        d = directory / str(i)
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        strategy = next(o.split("=", 1)[1] for o in overrides if o.startswith("strategy="))
        (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump({
            "strategy": {"name": strategy, "lr_grid": (grids or {}).get(strategy)}, "seed": seed,
            "monitor": "val/acc"}))
        (d / "metrics.json").write_text(json.dumps({"monitor": "val/acc", "strategy_label": strategy,
                                                    "params/trainable_fraction": 0.5, **metrics}))
    return directory


# (strategy, lr) -> (val/acc per seed, test/acc per seed, train time s). Planted: full's best lr on validation is
# the largest tried (4e-5), and its lr 2e-5 has the best *test* score but not the best validation score; LoRA's best
# is inside its grid; head_only is 3 points worse than LoRA.
GRID = {
    ("full", 1e-5): ((0.80, 0.81, 0.82), (0.80, 0.81, 0.82), 100),
    ("full", 2e-5): ((0.86, 0.87, 0.88), (0.95, 0.96, 0.97), 100),
    ("full", 4e-5): ((0.90, 0.91, 0.92), (0.90, 0.92, 0.91), 100),
    ("lora", 1e-4): ((0.85, 0.86, 0.87), (0.85, 0.86, 0.87), 60),
    ("lora", 3e-4): ((0.91, 0.92, 0.93), (0.91, 0.915, 0.925), 60),
    ("lora", 1e-3): ((0.88, 0.89, 0.90), (0.88, 0.89, 0.90), 60),
    ("head_only", 1e-3): ((0.88, 0.89, 0.90), (0.88, 0.885, 0.895), 20),
    ("head_only", 3e-3): ((0.87, 0.88, 0.89), (0.87, 0.88, 0.89), 20),
    ("head_only", 1e-2): ((0.86, 0.87, 0.88), (0.86, 0.87, 0.88), 20),
}


@pytest.fixture
def lr_sweep(tmp_path):
    jobs = []
    for (strategy, lr), (vals, tests, time_s) in GRID.items():
        for seed, val, test in zip(SEEDS, vals, tests):
            jobs.append(([f"strategy={strategy}", f"lr={lr:g}", f"seed={seed}"], seed, {
                "val/acc": val, "test/acc": test, "lr": lr, "train_time_s": time_s}))
    return write_jobs(tmp_path / "sweep", ["strategy=full,lora,head_only", "lr=1e-5,1e-3", "seed=1,2,3"], jobs)


def recommendation(summary: str) -> list[str]:
    return [line.removeprefix("- ") for line in summary.split("## Recommendation\n\n")[1].split("\n\n")[0].splitlines()]


def test_validation_chooses_each_methods_lr_and_the_edge_is_said(lr_sweep):
    build_report(lr_sweep)
    summary = (lr_sweep / "summary.md").read_text()
    lines = recommendation(summary)
    # LoRA at 3e-4 has the best validation mean (0.92); full at 2e-5 has the best test mean (0.96) but is not chosen.
    assert lines[1] == ("Best on validation: **lora lr=0.0003** (`strategy=lora,lr=0.0003`): test/acc 0.9167 ± "
                        "0.007638 over 3 seed(s) (val/acc 0.92).")
    assert ("full: its best learning rate on val/acc is the largest tried (1e-05, 2e-05, 4e-05); its best may lie "
            "above the grid: widen it upward (e.g. lr=8e-05).") in lines
    assert not any(line.startswith("lora:") for line in lines)  # its best lies inside its grid
    assert ("head_only: its best learning rate on val/acc is the smallest tried (0.001, 0.003, 0.01); its best may "
            "lie below the grid: widen it downward (e.g. lr=0.00033).") in lines
    table = summary.split("## Each method at its own learning rate")[1]
    assert "| full | 1e-05, 2e-05, 4e-05 | 4e-05 | 0.81, 0.87, 0.91 | best at the largest lr tried: widen the grid |" \
        in table
    # The Pareto fronts hold each method once, at its chosen lr, by validation: full at 2e-5 (the best test score)
    # is not there, and full at 4e-5 is dominated by LoRA at 3e-4 (better on validation, cheaper).
    assert ("- train time (s): head_only lr=0.001 (val/acc 0.89, test/acc 0.8867 at 20); lora lr=0.0003 (val/acc "
            "0.92, test/acc 0.9167 at 60)\n") in summary


def exact_bootstrap(columns: list[list[float]], tolerance: float) -> tuple[list[float], list[float]]:
    """Every ordered resample of the seeds, equally likely: the exact distribution the bootstrap samples from."""
    n = len(columns[0])
    within, regret = np.zeros(len(columns)), np.zeros(len(columns))
    draws = list(itertools.product(range(n), repeat=n))
    for draw in draws:
        means = [sum(col[i] for i in draw) / n for col in columns]
        best = max(means)
        within += [best - m <= tolerance + 1e-12 for m in means]
        regret += [best - m for m in means]
    return list(within / len(draws)), list(regret / len(draws))


def test_probabilities_match_the_exact_bootstrap_distribution(lr_sweep):
    rows, keys = collect(lr_sweep)
    configs = {c.label: c for c in configurations(rows, keys, "test/acc")}
    chosen = [configs["lora lr=0.0003"], configs["full lr=4e-05"], configs["head_only lr=0.001"]]
    odds = bootstrap(chosen, "test/acc", 0.01)
    within, regret = exact_bootstrap([[c.scores[s] for s in SEEDS] for c in chosen], 0.01)
    for config, w, r in zip(chosen, within, regret):
        assert odds[config.name].within == pytest.approx(w, abs=0.015)  # 10,000 draws: standard error <= 0.005
        assert odds[config.name].regret == pytest.approx(r, abs=0.001)
    # Planted: head_only is about 3 points below LoRA on every seed, never within 1 point.
    assert odds[chosen[2].name].within == 0.0 and odds[chosen[2].name].regret == pytest.approx(0.03, abs=0.002)
    # Two equal methods: each is always within the tolerance, with no regret.
    twin = configurations(rows, keys, "test/acc")
    same = [next(c for c in twin if c.label == "lora lr=0.0003"), next(c for c in twin if c.label == "lora lr=0.001")]
    same[1].scores = dict(same[0].scores)
    equal = bootstrap(same, "test/acc", 0.01)
    assert [(o.within, o.regret) for o in equal.values()] == [(1.0, 0.0), (1.0, 0.0)]


def test_the_cards_sweep_pairs_on_its_shared_seed_and_says_what_it_cannot_decide(tmp_path):
    """``strategy=full,partial lr=1e-5,2e-5`` at the default seed and a short budget: every job near chance, one run
    each, a test split partly scored. The report pairs on seed 42 and says all of it."""
    shares = [50, 37, 40, 50, 35]  # BBC's test labels per class (212 examples)
    matrix = [[0] * 5 for _ in range(5)]
    for i, n in enumerate(shares):
        matrix[i][0] = n  # a model that answers "business" for everything
    jobs = []
    for strategy, label in (("full", "full"), ("partial", "partial(k=1)")):
        for lr, acc in ((1e-5, 0.23), (2e-5, 0.33)):
            jobs.append(([f"strategy={strategy}", f"lr={lr:g}"], 42, {
                "strategy_label": label, "val/acc": acc, "test/acc": acc, "lr": lr, "train_time_s": 10,
                "data/test_examples": 48, "data/split_sizes": {"train": 800, "validation": 212, "test": 212},
                "test/confusion_matrix": {"labels": list("abcde"), "matrix": matrix}}))
    sweep = write_jobs(tmp_path / "card", ["strategy=full,partial", "lr=1e-5,2e-5"], jobs)
    build_report(sweep)
    summary = (sweep / "summary.md").read_text()
    lines = recommendation(summary)
    # Paired on seed 42, which every job ran: one shared seed, so no interval, and it says so.
    assert lines[2] == ("full lr=2e-05 vs partial(k=1) lr=2e-05: 1 shared seed, no interval; run more seeds "
                        "(`seed=1,2,3`) to tell them apart.")
    assert ("Each configuration ran once (seed 42): nothing here separates a configuration from seed noise; run seeds "
            "(`seed=1,2,3`, 3x the jobs) to decide.") in lines
    chance = next(line for line in lines if line.startswith("At chance level:"))
    # Majority class: 50 of 212 = 0.2358; flagged below 0.2358 + 5% of (1 - 0.2358) = 0.2740: 0.23, not 0.33.
    assert chance.startswith("At chance level: full lr=1e-05 (0.23); partial(k=1) lr=1e-05 (0.23), less than 5% of "
                             "the way from what a trivial guess scores on test/acc (0.2358: the better of the majority "
                             "class and a guess by the test labels' shares) to a perfect score")
    assert ("Part of the test split scored (trainer.limit_test_batches): test/acc of full lr=1e-05 48 of 212; "
            "full lr=2e-05 48 of 212") in " ".join(lines)
    assert any(line.startswith("full: its best learning rate on val/acc is the largest tried (1e-05, 2e-05)")
               for line in lines)
    # Four configurations, four labels, in the text and in the budget and comparison tables alike.
    rows, keys = collect(sweep)
    assert sorted(c.label for c in configurations(rows, keys, "test/acc")) == [
        "full lr=1e-05", "full lr=2e-05", "partial(k=1) lr=1e-05", "partial(k=1) lr=2e-05"]
    assert "| full lr=2e-05 | strategy=full,lr=2e-05 | 1 |" in summary


def test_methods_at_one_shared_lr_are_pointed_to_their_own_grids(tmp_path):
    """``strategy=full,lora`` at the default lr: the ranking may be the lr's; the report names each method's grid
    from its strategy config."""
    jobs = [([f"strategy={s}", f"seed={seed}"], seed, {"val/acc": acc + seed / 100, "test/acc": acc, "lr": 2e-4})
            for s, acc in (("full", 0.9), ("lora", 0.7)) for seed in SEEDS]
    sweep = write_jobs(tmp_path / "shared", ["strategy=full,lora", "seed=1,2,3"], jobs,
                       {"full": [1e-4, 2e-4, 4e-4], "lora": [5e-4, 1e-3, 2e-3]})
    build_report(sweep)
    lines = recommendation((sweep / "summary.md").read_text())
    assert ("The methods ran at one shared learning rate (0.0002): their best learning rates differ (LoRA's is about "
            "10x full fine-tuning's), so this ranking may reflect the learning rate rather than the method; sweep lr "
            "per method, over each one's own grid (strategy.lr_grid): full: `lr=0.0001,0.0002,0.0004`; lora: "
            "`lr=0.0005,0.001,0.002`.") in lines


def test_chance_levels_are_the_best_trivial_guess():
    """Exact expected scores of trivial guesses: majority for accuracy; 1/k for macro recall, precision and F1 (a
    guess by the label shares scores F1 = share per class); 0.5 for AUROC."""
    shares = [0.9, 0.1]
    assert chance_level("test/acc", shares) == 0.9
    assert chance_level("test/f1", shares) == chance_level("test/recall", shares) == 0.5
    assert chance_level("test/auroc", shares) == 0.5 and chance_level("test/loss", shares) is None
    # A skewed split: 0.94 accuracy against a 0.9 majority is 40% of the way to perfect, not "chance".
    good = configurations([{"job": 0, "status": "completed", "test/acc": 0.94, "best_val": 0.94, "seed_value": 1,
                            "test_class_shares": shares, "strategy_name": "full"}], [], "test/acc")
    assert not [line for line in evidence_lines(good, "test/acc") if line.startswith("At chance")]


def test_one_lr_given_two_ways_counts_once_and_unknown_lrs_do_not_count_as_several():
    jobs = [{"job": i, "status": "completed", "test/acc": 0.9, "best_val": v, "seed_value": 1, "lr_value": lr,
             "strategy": s, "lr": str(lr), "strategy_name": s} for i, (s, lr, v) in enumerate(
                 [("full", 1e-4, 0.8), ("full", 1e-4, 0.8), ("full", 3e-4, 0.9), ("lora", None, 0.9)])]
    jobs[1]["lr"] = "0.0001"  # the same rate, written another way: a configuration of its own
    found = methods(configurations(jobs, ["strategy", "lr"], "test/acc"), "val/acc")
    full = next(m for m in found if m.label == "full")
    assert full.lrs == [1e-4, 3e-4] and full.edge == "largest"
    lines = lr_warnings(found, "val/acc")
    assert lines[0].startswith("full: its best learning rate on val/acc is the largest tried (0.0001, 0.0003)")
    assert not any("ran at one learning rate only" in line for line in lines)  # lora's lr is unknown, not one
