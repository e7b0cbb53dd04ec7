"""The small job the serving tests share."""

from __future__ import annotations

import pytest

from tests.helpers import make_tiny_classifier


@pytest.fixture(scope="module")
def tiny_job(tiny_model_dir, tmp_path_factory):
    """A job directory with a tiny exported classifier, trained (its saved config says) at max_length=16."""
    job = tmp_path_factory.mktemp("tiny") / "job"
    make_tiny_classifier(tiny_model_dir, job / "model")
    (job / ".hydra").mkdir()
    (job / ".hydra" / "config.yaml").write_text("task: text_classification\nmax_length: 16\n")
    return job
