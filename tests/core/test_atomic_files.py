"""One atomic write: a unique temporary file, flushed to disk, renamed over the target; nothing left on failure."""

from __future__ import annotations

import os

import pytest

from ftlab.core.atomic_files import atomic_write, building


def test_a_write_replaces_the_file_whole_and_flushes_it(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    target = tmp_path / "summary.csv"
    target.write_text("old\n")
    seen = []
    atomic_write(target, lambda tmp: (seen.append(tmp), tmp.write_text("new\n")))
    assert target.read_text() == "new\n" and len(synced) == 1
    assert seen[0].parent == tmp_path and seen[0].suffix == ".csv" and seen[0].name.startswith(".summary.csv.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.csv"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("{}")

    def fail(tmp):
        tmp.write_text('{"half": ')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, fail)
    assert target.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_two_writers_use_different_temporary_names(tmp_path):
    names = []

    def inner(tmp):
        names.append(tmp.name)
        atomic_write(tmp_path / "a.txt", lambda t: (names.append(t.name), t.write_text("inner")))
        tmp.write_text("outer")

    atomic_write(tmp_path / "a.txt", inner)
    assert names[0] != names[1] and (tmp_path / "a.txt").read_text() == "outer"


def test_a_failed_build_leaves_no_directory(tmp_path):
    with pytest.raises(RuntimeError), building(tmp_path / "cache") as tmp:
        (tmp / "part").write_text("x")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
