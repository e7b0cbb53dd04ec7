"""Where a tool may write: never over what it reads (its input file, the model directory) nor into a job directory,
whose files (the trained model, checkpoints, saved config, metrics) are the results of a run that may have taken
hours. ``ftlab.predict`` and ``ftlab.onnx_export`` check their output with ``check_output_target`` before anything
loads.

Paths are compared resolved (``os.path.realpath``): a symbolic link to the model's weights, or a directory reached
through one, is the file or directory it points to.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ftlab.core.checks import FtlabError

JOB_RECORDS = ("metrics.json", "plan.json")  # what ftlab.train writes into a job directory beside model/


def is_job_dir(path: Path) -> bool:
    """Whether ``path`` is a job's output directory: the config Hydra saved (``.hydra/config.yaml``), or what
    ``ftlab.train`` writes beside the exported ``model/`` (``metrics.json`` or ``plan.json``). A directory that merely
    has ``model/`` and ``checkpoints/`` folders (a project's root, say) is not one."""
    if (path / ".hydra" / "config.yaml").is_file():
        return True
    return (path / "model").is_dir() and any((path / name).is_file() for name in JOB_RECORDS)


def real(path: str | Path) -> Path:
    """``path`` absolute, with every symbolic link in it resolved (also when the last parts do not exist yet)."""
    return Path(os.path.realpath(path))


def check_output_target(output: str | Path, option: str, reads: Iterable[tuple[str, Path]],
                        jobs: Iterable[Path] = (), job_output: str | None = None,
                        own_job: Path | None = None) -> None:
    """Refuse (``FtlabError``, one line naming ``option``) an output path that would overwrite what must stay.

    ``reads``: (description, path) of what the tool reads; the output may not be one of them, lie inside one, or
    contain one (a directory output is replaced whole). ``jobs``: job directories the caller knows of (the one whose
    ``model/`` it reads) besides those ``is_job_dir`` recognises. The output may not be a job directory nor lie
    inside one, except at ``<own_job>/<job_output>``: the job whose model the tool exports may get its own
    ``onnx/`` (where ``onnx_export`` writes by default); another job's never.
    """
    target = real(output)
    for what, path in reads:
        source = real(path)
        if target == source:
            raise FtlabError(f"{option} {output}: is {what} ({path}); give another path")
        if source in target.parents:
            raise FtlabError(f"{option} {output}: is inside {what} {path}, which the output would overwrite; give a "
                             "path outside it")
        if target in source.parents:
            raise FtlabError(f"{option} {output}: contains {what} {path}, which the output would replace; give a "
                             "path that does not contain it")
    known = {real(job) for job in jobs}
    own = real(own_job) if own_job is not None and job_output is not None else None
    for directory in (target, *target.parents):
        if directory not in known and not is_job_dir(directory):
            continue
        if directory == target:
            raise FtlabError(f"{option} {output}: is a job directory; its files are the job's results, give a path "
                             "outside it")
        if directory == own and target == directory / job_output:
            return
        allowed = f", or its {job_output}/" if directory == own else ""
        raise FtlabError(f"{option} {output}: is inside the job directory {directory}, whose files are the job's "
                         f"results; give a path outside it{allowed}")
