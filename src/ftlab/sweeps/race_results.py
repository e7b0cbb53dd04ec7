"""The sweep report's lines on a race (``race.json``, written by ``ftlab.sweeps.race``): its answer, why it stopped,
and how each method fared, round by round."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ftlab.sweeps.probability import tolerance_amount
from ftlab.sweeps.race import RECORD


def race_section(sweep_dir: Path) -> list[str]:
    """Lines for summary.md; none for a sweep that was not a race (or whose race.json cannot be read)."""
    path = Path(sweep_dir) / RECORD
    try:
        race = json.loads(path.read_text())
        methods, settings = race["methods"], race["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    monitor = race.get("monitor", "")
    within = tolerance_amount(monitor, settings["tolerance"], 1.0)[1]
    lines = ["", "## Race to a decision", "",
             f"**{race['answer']}**", "",
             f"Stopped: {race['stopped']}. {race['jobs']} jobs, {race['train_time_s']:.0f} s of training. Each method "
             f"ran its learning-rate grid at one seed (round 0); the methods still racing then got "
             f"{settings['seeds_per_round']} more seeds per round at the rate chosen on {monitor}. A method left when "
             f"a paired bootstrap on {monitor} gave it probability < {1 - settings['confidence']:.2f} of being within "
             f"{within} of the best.", "",
             f"| method | grid | chosen lr | seeds | {monitor} mean | P(within {within}) | left |",
             "|---|---|---|---|---|---|---|"]
    for m in methods:
        val = list(m["val"].values())
        cells = [m["spec"], ", ".join(f"{lr:g}" for lr in m["grid"]), f"{m['lr']:g}" if m["lr"] else "",
                 str(len(val)), f"{statistics.fmean(val):.4g}" if val else "",
                 f"{m['within']:.2f}" if m["within"] is not None else "", m["out"] or "racing to the end"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
