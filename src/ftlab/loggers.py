"""Experiment loggers: W&B (offline automatically without a key), CSV, or none."""

from __future__ import annotations

import logging
import netrc
import os
import sys
from typing import Any

from hydra.utils import instantiate

log = logging.getLogger(__name__)


def has_wandb_credentials() -> bool:
    """True when W&B could log online without prompting: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def build_loggers(cfg: dict[str, Any] | None) -> list:
    """Instantiate the configured Lightning loggers.

    W&B never prompts: with no credentials and no explicit WANDB_MODE it runs offline
    (sync later with ``wandb sync <dir>``).
    """
    loggers = []
    for spec in (cfg or {}).values():
        if spec is None:
            continue
        spec = dict(spec)
        if spec["_target_"].endswith("WandbLogger"):
            if "WANDB_MODE" not in os.environ and not has_wandb_credentials():
                log.info("W&B: no API key found, logging offline")
                spec["offline"] = True
            os.makedirs(spec.get("save_dir") or ".", exist_ok=True)
        loggers.append(instantiate(spec, _convert_="all"))
    return loggers


def finish_loggers(loggers: list, failed: bool) -> None:
    """Close every logger; finish the W&B run so the next job of a sweep gets its own run."""
    for logger in loggers:
        logger.finalize("failed" if failed else "success")
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)
