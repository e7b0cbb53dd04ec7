"""Sweep report: one row per job, seed aggregation and plots, written into the sweep directory.

``python -m ftlab.report <sweep dir>`` rebuilds it at any time (also for a running or interrupted sweep);
``ReportCallback`` (a Hydra callback in ``conf/config.yaml``) rebuilds it after every job of a multirun and, at the
end, logs its warnings and where it is. A directory that is not a sweep (missing, no job directories, no job with a
readable record, an unknown ``--metric``) is one line ``ftlab.report: ...`` (exit status 1) and no summary is written.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from ftlab.core.atomic_files import atomic_write
from ftlab.core.checks import FtlabError, ToolParser, at_least, memory_mib, tool_name
from ftlab.deploy.variants import int8_warnings
from ftlab.sweeps.budget import curves, leaders
from ftlab.sweeps.comparable import set_apart
from ftlab.sweeps.configurations import configurations
from ftlab.sweeps.dashboard import log_report, wandb_settings
from ftlab.sweeps.decision import decision_section, recommend
from ftlab.sweeps.plots import budget_plot, pareto_plot, plot, retention_plot
from ftlab.sweeps.race_results import race_section
from ftlab.sweeps.search_results import search_section
from ftlab.sweeps.sweep_dir import check_sweep_dir, collect, collect_many, refused_links, unreadable
from ftlab.sweeps.tables import aggregate, fmt, markdown_table, metric_columns, per_class_auroc, write_rows

log = logging.getLogger(__name__)

STATUSES = ("completed", "pruned", "failed", "running", "unreadable")  # pruned and unreadable: counted when present


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
    """Write ``summary.csv``, ``summary.md`` and the plots into ``sweep_dir``; return the rows, aggregates and
    warnings.

    Several sweep directories (a list) make one report in ``out_dir``: their jobs compete as one sweep.

    ``metric`` (decided on and plotted): by default the test counterpart of the jobs' monitored metric (val/f1 ->
    test/f1). ``tolerance`` (points of a fraction metric, else percent), ``max_time`` (s) and ``max_memory_mb``
    shape the recommendation at the top of ``summary.md``. ``dashboard``: also log the report to W&B when the jobs
    logged there.

    Warnings (one line each, at the top of ``summary.md``): links to jobs outside the sweep (left out), jobs whose
    files cannot be read (listed as unreadable), jobs with another task, model or data than the sweep or that saw
    other data (listed, not ranked). Only the remaining jobs are aggregated, ranked and plotted.
    """
    sweeps = [Path(d) for d in sweep_dir] if isinstance(sweep_dir, (list, tuple)) else [Path(sweep_dir)]
    jobs = [job for d in sweeps for job in check_sweep_dir(d)]
    if len(sweeps) == 1:
        sweep_dir, (rows, keys) = sweeps[0], collect(sweeps[0])
    elif out_dir is None:
        raise FtlabError("several sweep directories: give --out, the directory for their joint report")
    else:
        sweep_dir, (rows, keys) = Path(out_dir), collect_many(sweeps)
    warnings = [*(line for d in sweeps for line in refused_links(d)), *unreadable(rows), *set_apart(rows, keys)]
    ranked = [r for r in rows if not r.get("set_apart")]
    if metric is not None:
        check_metric(ranked, metric)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    metric_cols = metric_columns(rows)
    agg = aggregate(ranked, keys, metric_cols)
    columns = ["job", "overrides", "status", *metric_cols, "reason"]
    monitor = next((r["monitor"] for r in ranked if r.get("monitor")), None)
    if metric is None:
        metric = "test/" + (monitor or "val/acc").split("/", 1)[-1]
    monitor = monitor or "val/" + metric.split("/", 1)[-1]
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    counts = {s: n for s, n in counts.items() if n or s not in ("pruned", "unreadable")}
    apart = len(rows) - len(ranked)

    fields = ["job", "overrides", *keys, "status", *metric_cols, "reason"]
    atomic_write(sweep_dir / "summary.csv", lambda p: write_rows(p, rows, fields))
    configs = configurations(ranked, keys, metric)
    recommendation = recommend(configs, metric, monitor, tolerance, max_time, max_memory_mb)
    text = [f"# Sweep {', '.join(map(str, sweeps))}", "",
            f"{len(rows)} jobs ({', '.join(f'{n} {s}' for s, n in counts.items())}); "
            f"swept: {', '.join(keys) or '(none)'}." + (f" {apart} not ranked (see Warnings)." if apart else ""), "",
            *(["## Warnings", "", *(f"- {line}" for line in warnings), ""] if warnings else []),
            *decision_section(configs, metric, monitor, recommendation, tolerance),
            "## Jobs", "", "best_val is the job's monitored validation metric.", "", markdown_table(rows, columns),
            *int8_warnings(rows)]
    if agg:
        atomic_write(sweep_dir / "summary_seeds.csv", lambda p: write_rows(p, agg))
        shown = [c for c in metric_cols if f"{c} mean" in agg[0]]
        pretty = [{"overrides": a["overrides"], "seeds": a["seeds"],
                   **{c: f"{fmt(a[f'{c} mean'])} ± {fmt(a[f'{c} std'])}" for c in shown if f"{c} mean" in a}}
                  for a in agg]
        text += ["", "## Mean ± std over seeds", "", markdown_table(pretty, ["overrides", "seeds", *shown])]
    text += per_class_auroc(ranked, keys)
    text += search_section(sweep_dir) + race_section(sweep_dir)
    budget_curves = curves(ranked, keys, monitor, {c.name: c.label for c in configs})
    if budget_curves:
        text += ["", f"## Budget: {monitor} while training", "",
                 "Best-so-far validation value (what the best checkpoint would give if training stopped there), mean "
                 "over seeds, at fractions of the largest job's budget; `plot_budget_curves.png` shows the curves.",
                 "", *leaders(budget_curves, monitor), *leaders(budget_curves, monitor, "samples")]
    plots = [p for p in (pareto_plot(configs, metric, monitor, sweep_dir),
                         budget_plot(budget_curves, monitor, sweep_dir),
                         *plot(configs, ranked, keys, metric, monitor, sweep_dir),
                         retention_plot(ranked, metric, sweep_dir)) if p]
    text += [""] + [f"![{p.stem}]({p.name})" for p in plots]
    atomic_write(sweep_dir / "summary.md", lambda p: p.write_text("\n".join(text) + "\n"))
    result = {"rows": rows, "aggregate": agg, "plots": plots, "dashboard": None, "warnings": warnings,
              "summary": sweep_dir / "summary.md"}
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
        # Once, at the end: one W&B report run, and the warnings and the report's place said once, not after each job.
        result = self._safe_report(Path(config.hydra.sweep.dir), dashboard=True)
        if result is not None:
            for line in result["warnings"]:
                log.warning("%s", line)
            log.info("report: %s", result["summary"])

    @staticmethod
    def _safe_report(sweep_dir: Path, dashboard: bool = False) -> dict[str, Any] | None:
        try:
            return build_report(sweep_dir, dashboard=dashboard)
        except Exception as err:  # a broken report must never fail a training job
            log.warning("sweep report failed: %s", failure_reason(err))
            return None


def main(argv: list[str] | None = None, prog: str = "python -m ftlab.report") -> int:
    parser = ToolParser(prog, __doc__)
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
    return 1 if any(r["status"] in ("failed", "unreadable") for r in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
