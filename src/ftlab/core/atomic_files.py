"""Files and directories published whole: built aside under a unique temporary name, flushed, renamed into place.
The one way ftlab writes what concurrent jobs share (prepared data, dequantised checkpoints, reports) and what a
crash must not leave half-written (checkpoints, predictions, curves, exports)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


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


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` to a uniquely named temporary file beside ``path`` (same suffix, so writers that infer the
    format from it still can), flush it to disk, then rename it over ``path``: a reader, a concurrent job or a crash
    never sees a half-written file, and a failed write leaves nothing behind."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):  # readable by the team; some network file systems refuse chmod
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_failure(err: OSError, where: Path) -> str:
    """Why a write under the directory ``where`` failed, in words: the error's own reason, or a full disk when the
    library that wrote gave none (numpy's "problem writing element 1024 to file" has no errno)."""
    if err.errno is not None:
        return err.strerror or str(err)
    with contextlib.suppress(OSError):
        if shutil.disk_usage(where).free < 1 << 20:
            return f"No space left on device ({err})"
    return str(err)
