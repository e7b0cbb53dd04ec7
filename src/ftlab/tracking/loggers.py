"""Experiment loggers: W&B (offline automatically without a key), CSV, or none."""

from __future__ import annotations

import logging
import netrc
import os
import sys
from pathlib import Path
from typing import Any

from hydra.utils import instantiate

from ftlab.tracking.identity import group_name, job_label, run_id, swept_keys

log = logging.getLogger(__name__)


def has_wandb_credentials() -> bool:
    """True when W&B could log online without prompting: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_mode() -> str:
    """The mode every W&B run of ftlab uses (jobs and the sweep report): ``WANDB_MODE`` when set, else online with
    credentials and offline without, so W&B never prompts (sync later with ``wandb sync <dir>``)."""
    if explicit := os.environ.get("WANDB_MODE"):
        return explicit
    if has_wandb_credentials():
        return "online"
    log.info("W&B: no API key found, logging offline")
    return "offline"


def wandb_identity(output_dir: str) -> dict[str, Any]:
    """Group, name and id of a job's W&B run, all derived from the job (its directory and saved overrides).

    In a multirun every job of the sweep shares one group (the sweep directory) and is named by its swept
    overrides; the id is derived from the job directory, so a requeued job resumes its own run, and so does
    ``resume=<job dir>`` run from another command line (it takes the original job's name and group).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    identity: dict[str, Any] = {"id": run_id(output_dir), "resume": "allow"}
    job = Path(output_dir).resolve()
    if HydraConfig.initialized() and Path(HydraConfig.get().runtime.output_dir).resolve() == job:
        hydra_cfg = HydraConfig.get()
        overrides = list(hydra_cfg.overrides.task)
        sweep_dir = Path(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
    elif (job / ".hydra" / "overrides.yaml").is_file():
        import yaml

        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        sweep_dir = job.parent if (job.parent / "multirun.yaml").is_file() else None
    else:
        return identity
    if sweep_dir is not None:
        identity["group"] = group_name(sweep_dir)
        identity["name"] = job_label(overrides, swept_keys(sweep_dir)) or ",".join(sorted(overrides))[:128]
    elif overrides:
        identity["name"] = ",".join(sorted(overrides))[:128]  # Hydra's override_dirname
    return identity


def quiet_settings() -> dict[str, Any]:
    """W&B settings for one of ftlab's runs: W&B's banner and its 30-line run summary bury the job's result, so they
    are silenced for that run only, not through the environment, which would silence a user's other W&B runs in the
    same process. A WANDB_SILENT the user set (either way) is W&B's own to read: then nothing."""
    return {} if "WANDB_SILENT" in os.environ else {"silent": True}


def build_loggers(cfg: dict[str, Any] | None, output_dir: str = ".") -> list:
    """Instantiate the configured Lightning loggers.

    W&B runs in ``wandb_mode()``. Group, name and id come from the sweep unless set in config.
    """
    loggers = []
    for spec in (cfg or {}).values():
        if spec is None:
            continue
        spec = dict(spec)
        if spec["_target_"].endswith("WandbLogger"):
            if quiet := quiet_settings():  # finish_loggers says in one line where the run is
                spec["settings"] = {**quiet, **dict(spec.get("settings") or {})}
            if wandb_mode() == "offline":
                spec["offline"] = True
            for key, value in wandb_identity(output_dir).items():
                if spec.get(key) is None:
                    spec[key] = value
            os.makedirs(spec.get("save_dir") or ".", exist_ok=True)
        logger = instantiate(spec, _convert_="all")
        if spec["_target_"].endswith("WandbLogger") and logger._wandb_init.get("anonymous") is None:
            # Lightning always passes anonymous=None, which W&B >= 0.19 warns about on every run.
            logger._wandb_init.pop("anonymous")
        loggers.append(logger)
    return loggers


def finish_loggers(loggers: list, failed: bool) -> None:
    """Close every logger; finish the W&B run so the next job of a sweep gets its own run.

    When the job is failing or being requeued (an exception is in flight), an error while closing is logged, not
    raised: it would replace the original exception. SLURM stops a requeued job's whole step, W&B's service process
    included, so closing the run can fail there, and submitit must still see its requeue exit.
    """
    # Where each W&B run is, read before it closes (a failing fit may have closed it already).
    runs = [(Path(run.dir).parent, run.offline) for logger in loggers
            if type(logger).__name__ == "WandbLogger" and (run := getattr(logger, "_experiment", None)) is not None]
    try:
        for logger in loggers:
            logger.finalize("failed" if failed else "success")
        if "wandb" in sys.modules:
            import wandb

            if wandb.run is not None:
                wandb.finish(exit_code=1 if failed else 0)
        for run_dir, offline in runs:  # W&B's own summary is silenced (WANDB_SILENT): this line replaces it
            log.info("W&B run in %s%s", run_dir, f" (offline; upload with: wandb sync {run_dir})" if offline else "")
    except Exception as err:
        if not failed:
            raise
        log.warning("could not close the loggers of a stopped job: %r", err)
