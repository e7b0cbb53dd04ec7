"""Each method at its own best learning rate: a sweep's configurations grouped by method (everything swept but the
learning rate and the seed), each method's learning rate chosen on validation, and plain warnings where the grid
cannot support the choice (best at an edge of the grid, or one shared learning rate for methods whose best rates
differ by an order of magnitude; Biderman et al. 2024 find LoRA's about 10x full fine-tuning's)."""

from __future__ import annotations

from dataclasses import dataclass

from ftlab.sweeps.configurations import Config, ranked


@dataclass
class Method:
    """A method and the learning rates it ran at; ``best`` is the one validation chose."""

    label: str
    best: Config
    tried: list[Config]  # by learning rate, smallest first

    @property
    def lrs(self) -> list[float]:
        return sorted({c.lr for c in self.tried if c.lr is not None})  # one lr given two ways counts once

    @property
    def edge(self) -> str | None:
        """``smallest`` or ``largest`` when the chosen learning rate is at that end of a grid of two or more."""
        lrs = self.lrs
        if len(lrs) < 2 or self.best.lr is None:
            return None
        return "smallest" if self.best.lr == lrs[0] else "largest" if self.best.lr == lrs[-1] else None


def methods(configs: list[Config], monitor: str) -> list[Method]:
    """The sweep's methods, best first on validation, each at the learning rate validation chose for it."""
    groups: dict[str, list[Config]] = {}
    for c in configs:
        groups.setdefault(c.method, []).append(c)
    out = []
    for members in groups.values():
        best = ranked(members, monitor)[0]
        out.append(Method(best.method_label, best, sorted(members, key=lambda c: (c.lr is None, c.lr or 0.0))))
    order = ranked([m.best for m in out], monitor)
    return sorted(out, key=lambda m: next(i for i, c in enumerate(order) if c is m.best))


def _grid(lrs: list[float]) -> str:
    return ", ".join(f"{lr:g}" for lr in lrs)


def _own_grids(found: list[Method]) -> str:
    """Each method's own grid from its strategy config (``strategy.lr_grid``), as overrides to sweep."""
    grids = [f"{m.label}: `lr={','.join(f'{lr:g}' for lr in m.best.lr_grid)}`" for m in found if m.best.lr_grid]
    return f", over each one's own grid (strategy.lr_grid): {'; '.join(grids)}" if grids else (
        " (e.g. three log-spaced values around each method's default)")


def lr_warnings(found: list[Method], monitor: str) -> list[str]:
    """One line per method whose chosen learning rate sits at an edge of its grid (with the next value to try,
    keeping the grid's spacing), and one line when the methods were compared at a single shared learning rate."""
    lines = []
    for m in found:
        lrs = m.lrs
        if m.edge == "largest":
            step = lrs[-1] / lrs[-2]
            lines.append(f"{m.label}: its best learning rate on {monitor} is the largest tried ({_grid(lrs)}); its "
                         f"best may lie above the grid: widen it upward (e.g. lr={lrs[-1] * step:.2g}).")
        elif m.edge == "smallest":
            step = lrs[1] / lrs[0]
            lines.append(f"{m.label}: its best learning rate on {monitor} is the smallest tried ({_grid(lrs)}); its "
                         f"best may lie below the grid: widen it downward (e.g. lr={lrs[0] / step:.2g}).")
    single = [m for m in found if len(m.lrs) == 1]
    if len(found) > 1 and len(single) == len(found):
        rates = sorted({m.lrs[0] for m in single})
        shared = f"one shared learning rate ({rates[0]:g})" if len(rates) == 1 else (
            f"one learning rate each ({_grid(rates)})")
        lines.append(f"The methods ran at {shared}: their best learning rates differ (LoRA's is about 10x full "
                     "fine-tuning's), so this ranking may reflect the learning rate rather than the method; sweep "
                     f"lr per method{_own_grids(found)}.")
    elif single and any(len(m.lrs) > 1 for m in found):
        lines.append(f"{', '.join(m.label for m in single)} ran at one learning rate only, the others at several: "
                     "they are compared at an lr not chosen for them.")
    return lines
