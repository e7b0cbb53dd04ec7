"""Shared fixtures: offline environment, a tiny BERT checkpoint, tiny data."""

from __future__ import annotations

import os

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
