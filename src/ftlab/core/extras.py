"""The optional extras of ``pyproject.toml`` and the modules each must make importable: one table, one check, one
install hint, for the config checks and the tools alike."""

from __future__ import annotations

import importlib.util

from ftlab.core.checks import FtlabError

# extra -> the modules it installs that ftlab imports (found without importing them: some take seconds to import)
EXTRAS = {
    "onnx": ("onnx", "onnxruntime", "onnxscript"),
    "serve": ("litserve", "prometheus_client"),
    "qlora": ("bitsandbytes",),
    "deepspeed": ("deepspeed",),
    "optuna": ("optuna",),
}


class ExtraMissing(FtlabError):
    """An optional extra that a setting or a tool needs is not installed."""


def missing_modules(*extras: str) -> list[str]:
    """The modules of ``extras`` that cannot be imported here."""
    return [m for extra in extras for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def extra_problem(*extras: str) -> str | None:
    """None when every module of ``extras`` is installed; else what is missing and the command that installs it."""
    missing = missing_modules(*extras)
    if not missing:
        return None
    names = " and ".join(f"the {extra} extra" for extra in extras)
    return f"needs {names} ({', '.join(missing)} missing): pip install -e '.[{','.join(extras)}]'"


def require_extras(what: str, *extras: str) -> None:
    """Raise ``ExtraMissing`` (``<what> needs the ... extra (...): pip install ...``) unless ``extras`` are
    installed."""
    if problem := extra_problem(*extras):
        raise ExtraMissing(f"{what} {problem}")
