"""Sweep report: one row per job, seed aggregation and plots, written into the sweep directory.

``python -m ftlab.report <sweep dir>`` rebuilds it at any time (also for a running or interrupted sweep);
``ReportCallback`` (a Hydra callback in ``conf/config.yaml``) rebuilds it after every job of a multirun. A directory
that is not a sweep (missing, no job directories, an unknown ``--metric``) is one line ``ftlab.report: ...`` (exit
status 1) and no summary is written.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from ftlab.core.atomic_files import atomic_write
from ftlab.core.checks import FtlabError, ToolParser, at_least, memory_mib, tool_name
from ftlab.deploy.variants import int8_warnings
from ftlab.sweeps.budget import curves, leaders
from ftlab.sweeps.dashboard import log_report, wandb_settings
from ftlab.sweeps.decision import configurations, decision_section, recommend
from ftlab.sweeps.plots import budget_plot, pareto_plot, plot, retention_plot
from ftlab.sweeps.search_results import search_section
from ftlab.sweeps.sweep_dir import by_configuration, check_sweep_dir, collect, collect_many

log = logging.getLogger(__name__)

TEST_ORDER = ("test/acc", "test/f1", "test/precision", "test/recall", "test/loss", "test/ppl")
COST_COLUMNS = ("trainable_pct", "train_time_s", "samples_per_s", "peak_memory_mb")
# What fine-tuning forgot of held-out general text (retention.source): perplexity change (LM), CKA / cosine (encoders).
RETENTION_COLUMNS = ("retention/ppl_change", "retention/ppl_before", "retention/ppl_after", "retention/cka",
                     "retention/cosine")
# The int8 ONNX model against PyTorch fp32 (export_onnx=true onnx.quantize=int8): drop in points, size, speed-up.
DEPLOY_COLUMNS = ("deploy/int8_drop", "deploy/int8_size_ratio", "deploy/int8_speedup_b1", "deploy/int8_speedup_b32")


def metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    """best_val, the test metrics the jobs have (then the untuned checkpoint's, if measured), retention, then costs."""
    present = {k for row in rows for k in row if k.startswith(("test/", "before/test/", "retention/", "deploy/"))}
    tests = [k for k in TEST_ORDER if k in present] + sorted(k for k in present if k.startswith("test/")
                                                             and k not in TEST_ORDER)
    before = [f"before/{k}" for k in tests if f"before/{k}" in present]
    retention = [k for k in RETENTION_COLUMNS if k in present]
    deploy = [k for k in DEPLOY_COLUMNS if k in present]
    return ["best_val", *tests, *before, *retention, *deploy, *COST_COLUMNS]


def aggregate(rows: list[dict[str, Any]], keys: list[str], columns: list[str]) -> list[dict[str, Any]]:
    """Mean and std over seeds for configurations that differ only in ``seed`` (completed jobs only)."""
    if "seed" not in keys:
        return []
    groups = by_configuration(rows, keys, lambda row: row["status"] == "completed")
    out = []
    for name, members in groups.items():
        agg: dict[str, Any] = {"overrides": name, "seeds": len(members)}
        for col in columns:
            nums = [m[col] for m in members if isinstance(m.get(col), (int, float)) and math.isfinite(m[col])]
            if nums:
                agg[f"{col} mean"] = statistics.fmean(nums)
                agg[f"{col} std"] = statistics.stdev(nums) if len(nums) > 1 else 0.0
        out.append(agg)
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|")


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _write_rows(path: Path, rows: list[dict[str, Any]], fields: list[str] | None = None) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields or list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def per_class_auroc(rows: list[dict[str, Any]], keys: list[str]) -> list[str]:
    """Markdown: test AUROC per class (one vs rest), mean over the seeds of each configuration (classification)."""
    groups = {name: [row["auroc_per_class"] for row in members] for name, members in by_configuration(
        rows, keys, lambda row: row["status"] == "completed" and row.get("auroc_per_class")).items()}
    if not groups:
        return []
    classes = sorted({c for members in groups.values() for m in members for c in m})
    table = [{"configuration": name, "seeds": len(members),
              **{c: statistics.fmean(m[c] for m in members if c in m) for c in classes}}
             for name, members in groups.items()]
    return ["", "## Test AUROC per class (one vs rest, mean over seeds)", "",
            markdown_table(table, ["configuration", "seeds", *classes])]


def check_metric(rows: list[dict[str, Any]], metric: str) -> None:
    """``--metric`` is a test metric that some completed job has (nothing to check while none has completed)."""
    done = [r for r in rows if r["status"] == "completed"]
    valid = sorted({k for r in done for k, v in r.items()
                    if k.startswith(("test/", "before/test/")) and isinstance(v, (int, float))})
    if done and metric not in valid:
        raise FtlabError(f"--metric={metric!r}: no completed job has this metric; valid: "
                         f"{', '.join(valid) or '(none)'}")


def build_report(sweep_dir: str | Path | list, metric: str | None = None, tolerance: float = 1.0,
                 max_time: float | None = None, max_memory_mb: float | None = None,
                 dashboard: bool = False, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Write ``summary.csv``, ``summary.md`` and the plots into ``sweep_dir``; return the rows and aggregates.

    Several sweep directories (a list) make one report in ``out_dir``: their jobs compete as one sweep.

    ``metric`` (decided on and plotted): by default the test counterpart of the jobs' monitored metric (val/f1 ->
    test/f1). ``tolerance`` (points of a fraction metric, else percent), ``max_time`` (s) and ``max_memory_mb``
    shape the recommendation at the top of ``summary.md``. ``dashboard``: also log the report to W&B when the jobs
    logged there.
    """
    sweeps = [Path(d) for d in sweep_dir] if isinstance(sweep_dir, (list, tuple)) else [Path(sweep_dir)]
    jobs = [job for d in sweeps for job in check_sweep_dir(d)]
    if len(sweeps) == 1:
        sweep_dir, (rows, keys) = sweeps[0], collect(sweeps[0])
    elif out_dir is None:
        raise FtlabError("several sweep directories: give --out, the directory for their joint report")
    else:
        sweep_dir, (rows, keys) = Path(out_dir), collect_many(sweeps)
        sweep_dir.mkdir(parents=True, exist_ok=True)
    if metric is not None:
        check_metric(rows, metric)
    metric_cols = metric_columns(rows)
    agg = aggregate(rows, keys, metric_cols)
    columns = ["job", "overrides", "status", *metric_cols, "reason"]
    monitor = next((r["monitor"] for r in rows if r.get("monitor")), None)
    if metric is None:
        metric = "test/" + (monitor or "val/acc").split("/", 1)[-1]
    monitor = monitor or "val/" + metric.split("/", 1)[-1]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("completed", "pruned", "failed", "running")}
    counts = {s: n for s, n in counts.items() if n or s != "pruned"}

    fields = ["job", "overrides", *keys, "status", *metric_cols, "reason"]
    atomic_write(sweep_dir / "summary.csv", lambda p: _write_rows(p, rows, fields))
    configs = configurations(rows, keys, metric)
    recommendation = recommend(configs, metric, tolerance, max_time, max_memory_mb)
    text = [f"# Sweep {', '.join(map(str, sweeps))}", "",
            f"{len(rows)} jobs ({', '.join(f'{n} {s}' for s, n in counts.items())}); "
            f"swept: {', '.join(keys) or '(none)'}.", "",
            *decision_section(configs, metric, recommendation),
            "## Jobs", "", "best_val is the job's monitored validation metric.", "", markdown_table(rows, columns),
            *int8_warnings(rows)]
    if agg:
        atomic_write(sweep_dir / "summary_seeds.csv", lambda p: _write_rows(p, agg))
        shown = [c for c in metric_cols if f"{c} mean" in agg[0]]
        pretty = [{"overrides": a["overrides"], "seeds": a["seeds"],
                   **{c: f"{_fmt(a[f'{c} mean'])} ± {_fmt(a[f'{c} std'])}" for c in shown if f"{c} mean" in a}}
                  for a in agg]
        text += ["", "## Mean ± std over seeds", "", markdown_table(pretty, ["overrides", "seeds", *shown])]
    text += per_class_auroc(rows, keys)
    text += search_section(sweep_dir)
    budget_curves = curves(rows, keys, monitor)
    if budget_curves:
        text += ["", f"## Budget: {monitor} while training", "",
                 "Best-so-far validation value (what the best checkpoint would give if training stopped there), mean "
                 "over seeds, at fractions of the largest job's budget; `plot_budget_curves.png` shows the curves.",
                 "", *leaders(budget_curves, monitor), *leaders(budget_curves, monitor, "samples")]
    plots = [p for p in (pareto_plot(configs, metric, sweep_dir), budget_plot(budget_curves, monitor, sweep_dir),
                         *plot(rows, metric, sweep_dir), retention_plot(rows, metric, sweep_dir)) if p]
    text += [""] + [f"![{p.stem}]({p.name})" for p in plots]
    atomic_write(sweep_dir / "summary.md", lambda p: p.write_text("\n".join(text) + "\n"))
    result = {"rows": rows, "aggregate": agg, "plots": plots, "dashboard": None}
    if dashboard and len(sweeps) == 1 and (settings := wandb_settings(jobs)):
        result["dashboard"] = log_report(sweep_dir, settings, rows, ["job", "overrides", *keys, "status",
                                                                      *metric_cols], recommendation, plots)
    return result


def failure_reason(error: BaseException) -> str:
    """One line: the exception type and its message with line breaks folded."""
    message = " ".join(line.strip() for line in str(error).strip().splitlines())
    return f"{type(error).__name__}: {message}"[:300]


class ReportCallback(Callback):
    """Hydra callback: record failed jobs and rebuild the sweep report after every job and at the end."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        out = Path(config.hydra.runtime.output_dir)
        if job_return.status == JobStatus.FAILED:
            reason = failure_reason(job_return._return_value)
            (out / "failure.json").write_text(json.dumps({"status": "failed", "reason": reason}) + "\n")
        if config.hydra.mode == RunMode.MULTIRUN:
            self._safe_report(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config, **kwargs) -> None:
        self._safe_report(Path(config.hydra.sweep.dir), dashboard=True)  # once, at the end: one W&B report run

    @staticmethod
    def _safe_report(sweep_dir: Path, dashboard: bool = False) -> None:
        try:
            build_report(sweep_dir, dashboard=dashboard)
        except Exception as err:  # a broken report must never fail a training job
            log.warning("sweep report failed: %s", failure_reason(err))


def main(argv: list[str] | None = None, prog: str = "python -m ftlab.report") -> int:
    parser = ToolParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, nargs="+", help="a sweep directory, or several to compare as one")
    parser.add_argument("--out", type=Path, help="where the joint report of several sweeps goes")
    parser.add_argument("--metric", help="metric to decide on and plot (default: the test counterpart of the monitor)")
    parser.add_argument("--tolerance", type=at_least(0, strict=False), default=1.0,
                        help="'cheapest within' tolerance: points of accuracy/F1 (1 = 0.01), else percent (default 1)")
    parser.add_argument("--max-time", type=at_least(0, strict=True), help="a training-time budget in seconds")
    parser.add_argument("--max-memory", type=memory_mib, help="a peak-memory budget: 4GB, 512MiB, ... (bare: MiB)")
    parser.add_argument("--no-wandb", action="store_true", help="do not log the report to W&B (by default it is "
                                                                   "logged when the sweep's jobs used W&B)")
    args = parser.parse_args(argv)
    try:
        result = build_report(args.sweep_dir, args.metric, args.tolerance, args.max_time, args.max_memory,
                              dashboard=not args.no_wandb, out_dir=args.out)
    except FtlabError as err:
        sys.exit(f"{tool_name(prog)}: {err}")
    print(((args.out if len(args.sweep_dir) > 1 else args.sweep_dir[0]) / "summary.md").read_text())
    return 1 if any(r["status"] == "failed" for r in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
