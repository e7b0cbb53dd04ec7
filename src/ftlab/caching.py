"""On-disk caches shared by concurrent jobs (prepared data, dequantised checkpoints): built aside, published whole."""

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
