"""A console a person reads: each message once, ftlab's own at INFO, other libraries' from WARNING up, nothing a
user cannot act on. The job's ``run.log`` keeps every record (INFO and up, ANSI codes stripped).

Hydra installs the handlers from ``conf/hydra/job_logging/ftlab.yaml``; ``route_library_output`` makes the libraries
that print through handlers of their own (Lightning, transformers) and Python warnings go through them too.
"""

from __future__ import annotations

import logging
import re
import warnings

from ftlab.core.library_bars import hide_library_bars

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Records a user cannot act on: advertisements, and reports that are expected on every fine-tuning run (a
# pretrained checkpoint has no task head, so the new head is always "MISSING" from it).
# Lightning's "srun is available but not used" hint is wrong for ftlab, which reaches SLURM through
# hydra/launcher=slurm (submitit), never srun.
UNACTIONABLE = (re.compile(r"Tip: For seamless cloud"), re.compile(r"LOAD REPORT"),
                re.compile(r"The `srun` command is available on your system but is not used"))


class ConsoleFilter(logging.Filter):
    """ftlab's records from INFO, everything else from WARNING, minus unactionable ones, library deprecations and
    records marked ``log_file_only`` (``extra={"log_file_only": True}``: kept in run.log, nothing to act on).

    ``verbose`` brings the detail back, as Hydra's ``hydra.verbose`` does for log levels: ``true`` for every logger,
    a logger name or a list of them (``hydra.verbose=[ftlab.sweeps,lightning]``) for those loggers and their
    children only. A verbose record passes from INFO up (a library's deprecations included), ftlab's from DEBUG."""

    def __init__(self, verbose: bool | str | list | None = False) -> None:
        super().__init__()
        self.verbose = verbose is True
        names = [] if isinstance(verbose, bool) or verbose is None else [verbose] if isinstance(verbose, str) \
            else list(verbose)
        self.names = tuple(str(name) for name in names)

    def _verbose_for(self, name: str) -> bool:
        return self.verbose or any(name == n or name.startswith(n + ".") for n in self.names)

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == "ftlab" or record.name.startswith("ftlab.")
        if self._verbose_for(record.name):
            return record.levelno >= (logging.DEBUG if own else logging.INFO)
        if record.levelno < (logging.INFO if own else logging.WARNING):
            return False
        if getattr(record, "library_deprecation", False) or getattr(record, "log_file_only", False):
            return False
        message = record.getMessage()
        return not any(pattern.search(message) for pattern in UNACTIONABLE)


class ConsoleFormatter(logging.Formatter):
    """``[ftlab] message`` for ftlab's records; ``[library] WARNING: message`` for the others."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "ftlab" or record.name.startswith("ftlab."):
            prefix = "[ftlab]" if record.levelno < logging.WARNING else f"[ftlab] {record.levelname}:"
        else:
            prefix = f"[{record.name.split('.')[0]}] {record.levelname}:"
        return f"{prefix} {record.getMessage()}" + (f"\n{self.formatException(record.exc_info)}"
                                                    if record.exc_info else "")


class PlainFormatter(logging.Formatter):
    """The file format, without terminal colour codes (a log file is read in an editor, not a terminal)."""

    def format(self, record: logging.LogRecord) -> str:
        return ANSI.sub("", super().format(record))


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # A deprecation raised inside an installed library is for its maintainers, not for the user.
    internal = issubclass(category, (DeprecationWarning, FutureWarning)) and "site-packages" in str(filename)
    logging.getLogger("py.warnings").warning("%s:%s: %s: %s", filename, lineno, category.__name__, message,
                                             extra={"library_deprecation": internal})


def route_library_output(verbose: bool = False) -> None:
    """Send Lightning's and transformers' messages and Python warnings through the root logger's handlers; the
    libraries' own progress bars off (``hide_library_bars``) unless ``verbose``."""
    import transformers

    logging.getLogger("lightning").handlers.clear()  # Lightning's own stderr handler printed every message twice
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    if not verbose:
        hide_library_bars()
    warnings.showwarning = _log_warning
