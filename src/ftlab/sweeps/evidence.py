"""Honest about weak evidence: one run per configuration, results within reach of chance level, and test metrics
computed on part of the test split, each said in one line of the report."""

from __future__ import annotations

from ftlab.sweeps.configurations import Config
from ftlab.sweeps.tables import fmt

# "Within reach of chance": less than 5% of the way from a trivial guess's score to a perfect one (relative, so a
# skewed test split whose majority class alone scores 0.9 does not flag every good model).
CHANCE_MARGIN = 0.05


def chance_level(metric: str, shares: list[float]) -> float | None:
    """What the best trivial guess scores on ``metric`` for test labels with these class shares (always the majority
    class, or a random class, uniform or by the shares; expected values). None for metrics without one (loss, ppl)."""
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
    # Macro F1: guessing each class at its own share scores F1 = share per class, 1/k in the mean, which neither
    # the majority guess nor the uniform guess beats.
    return 1 / k


def evidence_lines(configs: list[Config], metric: str) -> list[str]:
    """The caveats the numbers need: single runs, chance-level results, partial test splits."""
    lines = []
    if configs and all(len(c.scores) == 1 for c in configs):
        seeds = sorted({str(next(iter(c.scores))) for c in configs})
        lines.append(f"Each configuration ran once (seed {', '.join(seeds)}): nothing here separates a configuration "
                     "from seed noise; run seeds (`seed=1,2,3`, 3x the jobs) to decide.")
    at_chance, levels = [], set()
    for c in configs:
        shares = c.evidence.get("class_shares")
        chance = chance_level(metric, shares) if shares else None
        if chance is not None and c.mean < chance + CHANCE_MARGIN * (1 - chance):
            at_chance.append(f"{c.label} ({fmt(c.mean)})")
            levels.add(fmt(chance))
    if at_chance:
        lines.append(f"At chance level: {'; '.join(at_chance)}, less than {CHANCE_MARGIN:.0%} of the way from what a "
                     f"trivial guess scores on {metric} ({', '.join(sorted(levels))}: the better of the majority class "
                     "and a guess by the test labels' shares) to a perfect score; these jobs learned little or "
                     "nothing (too few steps, or a learning rate far from the method's).")
    partial = [c for c in configs if "examples" in c.evidence and "split" in c.evidence
               and c.evidence["examples"] < c.evidence["split"]]
    if partial:
        parts = "; ".join(f"{c.label} {c.evidence['examples']} of {c.evidence['split']}" for c in partial)
        lines.append(f"Part of the test split scored (trainer.limit_test_batches): {metric} of {parts} test "
                     "examples; a smaller sample, a wider uncertainty.")
    return lines
