"""The sweep report on the W&B dashboard: one run in the sweep's group with the table, the plots and the
recommendation, so the decision sits next to the job runs it is made from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftlab.tracking.identity import group_name, run_id, saved_yaml
from ftlab.tracking.loggers import quiet_settings, wandb_mode


def wandb_settings(jobs: list[Path]) -> dict[str, Any] | None:
    """The W&B logger settings of the sweep's jobs (from the first job's saved config), or None if they used none."""
    for job in jobs:
        config = saved_yaml(job / ".hydra" / "config.yaml", {})
        if config:
            spec = (config.get("logger") or {}).get("wandb")
            return spec if isinstance(spec, dict) and str(spec.get("_target_", "")).endswith("WandbLogger") else None
    return None


def log_report(sweep_dir: Path, settings: dict[str, Any], rows: list[dict[str, Any]], columns: list[str],
               recommendation: list[str], plots: list[Path]) -> Path:
    """Log the report as one W&B run (job type ``report``) in the sweep's group; return the run's directory.

    Its id is derived from the sweep directory: rebuilding the report updates the same run. Offline without
    credentials, as the jobs are.
    """
    import wandb

    run = wandb.init(project=settings.get("project"), entity=settings.get("entity"), group=group_name(sweep_dir),
                     name="sweep report", job_type="report", id=run_id(sweep_dir / "report"), resume="allow",
                     dir=str(sweep_dir), mode=wandb_mode(), reinit="create_new", settings=quiet_settings())
    try:
        table = wandb.Table(columns=columns, data=[[_cell(row.get(c)) for c in columns] for row in rows])
        run.log({"report/summary": table, **{f"report/{p.stem}": wandb.Image(str(p)) for p in plots},
                 "report/recommendation": wandb.Html("<ul>" + "".join(f"<li>{line}</li>" for line in recommendation)
                                                     + "</ul>")})
        run.summary["recommendation"] = "\n".join(recommendation)
        return Path(run.dir).parent
    finally:
        run.finish()


def _cell(value: Any) -> Any:
    return value if isinstance(value, (int, float, str)) or value is None else str(value)
