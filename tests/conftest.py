"""Shared fixtures: offline environment, a tiny BERT checkpoint, tiny data."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.helpers import make_tiny_bert, make_tiny_csv


@pytest.fixture(scope="session", autouse=True)
def offline_env(tmp_path_factory):
    """No network, no prompts, and a data cache private to the test session."""
    os.environ.update(HF_HUB_OFFLINE="1", WANDB_MODE="offline", WANDB_SILENT="true",
                      TOKENIZERS_PARALLELISM="false",
                      FTLAB_CACHE=str(tmp_path_factory.mktemp("ftlab-cache")))
    os.environ.pop("WANDB_API_KEY", None)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory):
    return make_tiny_csv(tmp_path_factory.mktemp("data") / "train.csv")


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a given size, read-only if asked (root only: mounting needs CAP_SYS_ADMIN; root writes through
    permissions, not onto a read-only mount)."""
    mounts = []

    def mount(size_bytes: int, read_only: bool = False):
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("a real full (or read-only) disk needs root to mount a tmpfs")
        path = tmp_path / f"disk{len(mounts)}"
        path.mkdir()
        size = -(-size_bytes // 4096) * 4096
        options = f"size={size}" + (",ro" if read_only else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        # Lazily: a process that still has a file open there (a W&B service, a data worker) must not keep it mounted.
        subprocess.run(["umount", "-l", str(path)], check=False)
