"""The experiment loggers as a job builds them: W&B quiet for the job's own run only."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from ftlab.tracking.loggers import build_loggers
from tests.helpers import CONF_DIR


def wandb_spec(tmp_path) -> dict:
    spec = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "logger" / "wandb.yaml").wandb)
    return {**spec, "project": "ftlab-test", "save_dir": str(tmp_path), "offline": True, "tags": ["test"]}


def test_wandb_is_silenced_for_the_jobs_run_and_not_for_the_process(tmp_path, monkeypatch):
    """A user who calls train() from a notebook keeps W&B's output for their own runs: nothing process-wide."""
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    (logger,) = build_loggers({"wandb": wandb_spec(tmp_path)}, str(tmp_path))
    assert logger._wandb_init["settings"] == {"silent": True}
    assert "WANDB_SILENT" not in os.environ


def test_the_users_wandb_silent_or_settings_win(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    spec = {**wandb_spec(tmp_path), "settings": {"silent": False, "console": "off"}}
    (logger,) = build_loggers({"wandb": spec}, str(tmp_path))
    assert logger._wandb_init["settings"] == {"silent": False, "console": "off"}
    monkeypatch.setenv("WANDB_SILENT", "false")  # the environment's choice, either way, is W&B's own to read
    (logger,) = build_loggers({"wandb": wandb_spec(tmp_path)}, str(tmp_path))
    assert "settings" not in logger._wandb_init
