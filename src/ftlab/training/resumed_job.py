"""The job that ``resume=<job dir>`` continues: its last checkpoint and its saved config, checked before anything heavy
loads (restoring the training state from the checkpoint is ``resume.py``)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from omegaconf import OmegaConf

from ftlab.core.checks import ConfigError
from ftlab.core.overrides import override_key
from ftlab.core.saved_config import conf_dir, load_saved_config

LAST_CHECKPOINT = "checkpoints/last.ckpt"


def last_checkpoint(job_dir: str | Path) -> Path | None:
    """The job's last checkpoint if it has one."""
    path = Path(job_dir) / LAST_CHECKPOINT
    return path if path.is_file() else None


def command_line_overrides() -> list[str]:
    """The overrides this run was started with (``python run.py lr=1e-4 ...``), or none outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not inside @hydra.main (tests call train(cfg) with a composed config)
        return []


def changed_by_overrides(cfg, old, overrides: list[str]) -> list[str]:
    """The ``overrides`` (besides ``resume=`` itself) whose key has another value in ``cfg``, the config composed for
    this run, than in the job's saved config ``old``; the same value given again changes nothing and passes."""

    def value(config, key: str):
        node = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
        return OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node

    changed = []
    for override in overrides:
        key = override_key(override).split("@", 1)[0]  # the config key a group override with a package sets
        if key in ("resume", "output_dir") or key.startswith("hydra."):  # output_dir: how DDP ranks > 0 relaunch
            continue
        # A group with a global package (debug=, experiment=) has no key of its own: it changes the config's
        # other keys, so the saved config cannot hold what it asks for.
        global_group = (conf_dir() / key).is_dir() and value(cfg, key) is None and value(old, key) is None
        if global_group or value(cfg, key) != value(old, key):
            changed.append(override)
    return changed


def resume_config(cfg):
    """For ``resume=<job dir>``: that job's saved config, writing into that job's directory again.

    The saved config (``.hydra/config.yaml``) is used as is, so the continued run is the same experiment. It is
    checked before anything is instantiated or resolved (``load_saved_config``): a job directory may come from
    someone else.
    """
    if not cfg.get("resume"):
        return cfg
    job = Path(str(cfg.resume)).expanduser().resolve()
    saved = job / ".hydra" / "config.yaml"
    if not job.is_dir():
        raise ConfigError([f"resume={cfg.resume!r}: no such directory; give a job directory (outputs/DATE/TIME)"])
    if not saved.is_file():
        raise ConfigError([f"resume={cfg.resume!r}: not a job directory (no .hydra/config.yaml there)"])
    if last_checkpoint(job) is None:
        raise ConfigError([f"resume={cfg.resume!r}: the job has no {LAST_CHECKPOINT} to resume from"])
    try:
        with zipfile.ZipFile(job / LAST_CHECKPOINT):  # its directory sits at the end: a cut file has none
            pass
    except (zipfile.BadZipFile, OSError) as err:
        raise ConfigError([f"resume={cfg.resume!r}: {LAST_CHECKPOINT} is truncated or corrupt ({err}); the job "
                           "cannot continue from it: start it again, or resume from a saved copy"]) from None
    old = load_saved_config(saved, f"resume={cfg.resume!r}", output_dir=job)
    if ignored := changed_by_overrides(cfg, old, command_line_overrides()):
        raise ConfigError([f"resume={cfg.resume!r} continues the job with its saved settings, so these overrides "
                           f"would be ignored: {', '.join(ignored)}; valid: resume=<job dir> alone, or a new job (not "
                           "resumed) to change a setting"])
    old.resume = str(job)
    return old
