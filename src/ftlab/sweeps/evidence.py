"""Honest about weak evidence: one run per configuration, results within reach of chance level, and test metrics
computed on part of the test split, each said in one line of the report."""

from __future__ import annotations

from ftlab.sweeps.configurations import Config
from ftlab.sweeps.paired import fmt

CHANCE_MARGIN = 0.05  # a result less than 5 points above chance level is "within reach of chance"


def chance_level(metric: str, shares: list[float]) -> float | None:
    """What the better of two trivial guesses scores on ``metric`` for test labels with these class shares: always
    the majority class, or a uniform random class (expected value). None for metrics without one (loss, ppl)."""
    k, top = len(shares), max(shares)
    name = metric.rsplit("/", 1)[-1]
    if k < 2 or name not in ("acc", "f1", "precision", "recall", "auroc"):
        return None
    if name == "acc":
        return max(top, 1 / k)
    if name == "auroc":
        return 0.5
    if name == "recall":  # macro: the majority guess recalls one class fully, a uniform guess 1/k of each
        return 1 / k
    if name == "precision":  # macro: a uniform guess is right with each class's share
        return max(top / k, sum(shares) / k)
    majority_f1 = 2 * top / (1 + top) / k
    uniform_f1 = sum(2 * s / k / (s + 1 / k) for s in shares) / k
    return max(majority_f1, uniform_f1)


def evidence_lines(configs: list[Config], metric: str) -> list[str]:
    """The caveats the numbers need: single runs, chance-level results, partial test splits."""
    lines = []
    if configs and all(len(c.scores) == 1 for c in configs):
        seeds = sorted({str(next(iter(c.scores))) for c in configs})
        lines.append(f"Each configuration ran once (seed {', '.join(seeds)}): nothing here separates a configuration "
                     "from seed noise; run seeds (`seed=1,2,3`, 3x the jobs) to decide.")
    at_chance = []
    for c in configs:
        shares = c.evidence.get("class_shares")
        chance = chance_level(metric, shares) if shares else None
        if chance is not None and c.mean < chance + CHANCE_MARGIN:
            at_chance.append(f"{c.label} ({fmt(c.mean)})")
    if at_chance:
        shares = configs[0].evidence["class_shares"]
        lines.append(f"At chance level: {'; '.join(at_chance)} within {CHANCE_MARGIN * 100:g} points of what a "
                     f"trivial guess scores on {metric} ({fmt(chance_level(metric, shares))}: the majority class or "
                     "a uniform guess on the test labels); these jobs learned little or nothing (too few steps, or a "
                     "learning rate far from the method's).")
    partial = [c for c in configs if "examples" in c.evidence and "split" in c.evidence
               and c.evidence["examples"] < c.evidence["split"]]
    if partial:
        parts = "; ".join(f"{c.label} {c.evidence['examples']} of {c.evidence['split']}" for c in partial)
        lines.append(f"Part of the test split scored (trainer.limit_test_batches): {metric} of {parts} test "
                     "examples; a smaller sample, a wider uncertainty.")
    return lines
