"""What the serving tests compare the server's answers with: ``ftlab.predict``'s rows for the same texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftlab.deploy.predict import predict

TEXTS = ["goal team coach league", "pasta soup cheese bread", "laptop chip server cloud", "ball score big news",
         "rice salad today", "code robot phone"]


def expected(job: Path, texts: list[str]) -> list[dict]:
    return [{"text": t, **p} for t, p in zip(texts, predict(job, texts, progress=False))]


def assert_same(got: dict, want: dict, tol: float = 1e-5) -> None:
    assert got["text"] == want["text"] and got["label"] == want["label"]
    assert list(got["probs"]) == list(want["probs"])
    assert list(got["probs"].values()) == pytest.approx(list(want["probs"].values()), abs=tol)
