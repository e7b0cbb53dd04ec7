"""Whether a directory a job will write into can be written: checked on the nearest part of its path that exists,
before anything creates it. ``os.access`` answers for the file system too: root may write anywhere, but not on a
read-only mount."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ftlab.core.overrides import override_key, override_value

# Where Hydra puts a job (conf/config.yaml) when the command line does not say: only the part before the first
# interpolation is known before Hydra composes the config.
DEFAULT_RUN_DIRS = {"hydra.run.dir": "outputs/", "hydra.sweep.dir": "outputs/multirun/"}


def unwritable(path: str | Path) -> str | None:
    """Why a directory at ``path`` could not be created and written (naming the part that exists), or None."""
    existing = Path(path).expanduser().absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if os.access(existing, os.W_OK | os.X_OK):
        return None
    why = " (read-only file system)" if _read_only(existing) else ""
    return f"{existing} is not a writable directory{why}"


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError as err:
        return err.errno == errno.EROFS


def run_dir_problem(argv: list[str]) -> str | None:
    """For ``python run.py [overrides]``: the job (or sweep) directory Hydra is about to create, when it cannot be
    written, as one line naming the override; checked before Hydra creates it, which would fail with a traceback."""
    key = "hydra.sweep.dir" if {"-m", "--multirun"} & set(argv) else "hydra.run.dir"
    given = [override_value(a) for a in argv if "=" in a and override_key(a) == key]
    value = given[-1] if given else DEFAULT_RUN_DIRS[key]
    known = value.split("${", 1)[0] or "."  # an interpolation (${now:...}) is Hydra's to resolve
    if (problem := unwritable(known)) is None:
        return None
    return f"{key}={value!r}: {problem}; choose a writable directory ({key}=<dir>)"
