"""Files and caches that concurrent jobs share (prepared data, dequantised checkpoints, reports): built aside,
published whole."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def building(target: Path) -> Iterator[Path]:
    """A temporary directory next to ``target``, renamed to ``target`` when the block succeeds.

    The rename is atomic, so a concurrent job never sees half a cache; if another job published the same
    ``target`` first (same key, identical content), this copy is dropped. A failed build leaves nothing behind.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=target.parent, prefix=".tmp-")
    try:
        yield Path(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file and rename, so concurrent jobs never see a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
