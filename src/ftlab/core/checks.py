"""Errors, and collecting config problems: every owner of a setting records what is wrong with it,
``validate_config`` raises once."""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import math
import re
from functools import cached_property
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ftlab.core.trainer_settings import TRAINER_KEYS, TrainerSettings, trainer_settings


class FtlabError(ValueError):
    """A problem the user can fix (a setting, a data file, a model directory, a tool's argument).

    ``python run.py`` and the tools print it as ``ftlab: <message>`` and exit with status 1, without a traceback.
    """


def existing_dir(path: str | Path, help_text: str) -> Path:
    """``path`` as a ``Path`` if it is an existing directory; else an ``FtlabError`` that says which and what to
    give."""
    path = Path(path)
    if not path.exists():
        raise FtlabError(f"{path}: no such directory; {help_text}")
    if not path.is_dir():
        raise FtlabError(f"{path}: not a directory; {help_text}")
    return path


class ConfigError(FtlabError):
    """Every problem found in a config: one line when there is one, else a count and one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        if len(problems) == 1:
            super().__init__(problems[0])
            return
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the config:\n{lines}")


class DataError(FtlabError):
    """A data file that cannot give a sound result: names the file (and line), the problem and what is valid."""


def tool_name(prog: str) -> str:
    """How a tool names itself in its one-line errors: ``ftlab.report`` (``python -m ftlab.report``) or
    ``ftlab report`` (the ``ftlab`` command)."""
    return prog.removeprefix("python -m ")


class ToolParser(argparse.ArgumentParser):
    """argparse for ftlab's tools, with one-line errors: ``ftlab.<tool>: <problem>; see --help``, exit status 2.
    ``doc``: the tool module's docstring, whose first paragraph (not its first line, which may stop mid-sentence)
    describes the tool in ``--help``."""

    def __init__(self, prog: str, doc: str):
        super().__init__(prog=prog, description=" ".join(doc.strip().split("\n\n")[0].split()).replace("``", "`"))

    def error(self, message: str):
        self.exit(2, f"{tool_name(self.prog)}: {message}; see {self.prog} --help\n")


# Memory sizes on tools' command lines, in MiB per unit (KB, MB, GB are decimal).
MEMORY_UNITS = {"": 1.0, "kb": 1e3 / 2**20, "mb": 1e6 / 2**20, "gb": 1e9 / 2**20, "kib": 1 / 1024, "mib": 1.0,
                "gib": 1024.0}


def memory_mib(text: str) -> float:
    """``4GB``, ``512MiB``, ``300`` (MiB) -> MiB, more than zero."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in MEMORY_UNITS or not _is_number(match.group(1)) \
            or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a memory size: a number > 0 with an optional unit "
                                         f"(KB, MB, GB, KiB, MiB, GiB; bare: MiB), e.g. 4GB")
    return float(match.group(1)) * MEMORY_UNITS[match.group(2).lower()]


def is_int(value: Any) -> bool:
    """An integer as a config or record holds it: ``True`` is an ``int`` to Python, never to ftlab."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool: what a numeric setting or a recorded metric must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def at_least(low: float, strict: bool):
    """An argparse type: a finite number above ``low`` (or equal to it unless ``strict``)."""
    def parse(text: str) -> float:
        if not _is_number(text) or float(text) < low or (strict and float(text) == low):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number {'>' if strict else '>='} {low:g}")
        return float(text)
    return parse


class Checker:
    """A composed config and the problems found in it so far, each ``key=value: what is wrong; what is valid``."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.problems: list[str] = []

    def get(self, key: str) -> Any:
        return OmegaConf.select(self.cfg, key, default=None)

    @cached_property
    def trainer(self) -> TrainerSettings:
        """The trainer settings, parsed once for every check that depends on them."""
        # Key by key: an unresolvable value elsewhere under trainer is not this object's to report.
        values = {key: self.plain(f"trainer.{key}") for key in TRAINER_KEYS}
        return trainer_settings({key: value for key, value in values.items() if value is not None})

    def plain(self, key: str) -> Any:
        """The node at ``key`` as plain, resolved Python (dicts and lists)."""
        node = OmegaConf.select(self.cfg, key, default=None)
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    def fail(self, key: str, problem: str) -> None:
        self.problems.append(f"{key}={self.get(key)!r}: {problem}")

    def positive(self, key: str, kind=float) -> None:
        value = self.get(key)
        if isinstance(value, float) and not math.isfinite(value):  # inf would train to NaN weights, nan compares False
            self.fail(key, f"must be a positive {kind.__name__}, and finite")
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0 or kind(value) != value:
            self.fail(key, f"must be a positive {kind.__name__}")

    def choice(self, key: str, choices) -> bool:
        if self.get(key) not in choices:
            valid = ", ".join("null" if c is None else str(c) for c in choices)  # as written in YAML
            self.fail(key, f"unknown value; valid choices: {valid}")
            return False
        return True

    def flag(self, key: str) -> None:
        """An optional boolean option."""
        if self.get(key) is not None and not isinstance(self.get(key), bool):
            self.fail(key, "must be true or false")

    def fraction(self, key: str, low_open: bool = False) -> bool:
        """A number in [0, 1) (or (0, 1] with ``low_open``)."""
        value = self.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
            0 < value <= 1 if low_open else 0 <= value < 1)
        if not ok:
            self.fail(key, "must be a fraction in (0, 1]" if low_open else "must be a fraction in [0, 1)")
        return ok

    def unknown_keys(self, key: str, valid, what: str, moved: dict[str, str] | None = None) -> None:
        """Every key under ``key`` is one of ``valid``; an unknown one (a typo, an option another choice owns) is named
        with the closest valid ones, so a misspelled ``++`` override can never be silently ignored."""
        node = self.get(key)
        if not hasattr(node, "keys"):
            return
        valid = sorted(valid)
        for name in node.keys():
            if name not in valid:
                close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]}?" if close else ""
                if name in (moved or {}):
                    hint = f"; {moved[name]}"
                self.problems.append(f"{f'{key}.' if key else ''}{name}: unknown option of {what}; valid: "
                                     f"{', '.join(valid) or '(none)'}{hint}")

    def target_arguments(self, key: str, extra: tuple[str, ...] = (), moved: dict[str, str] | None = None) -> None:
        """The keys of a ``_target_`` node are arguments of the class it names (unless it takes ``**kwargs``)."""
        target = self.get(f"{key}._target_")
        try:
            module, _, name = str(target).rpartition(".")
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError):
            self.fail(f"{key}._target_", "not an importable class")
            return
        params = inspect.signature(cls).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        self.unknown_keys(key, [p for p in [*params, "_target_", *extra] if p not in ("self", "params")], str(target),
                          moved)
