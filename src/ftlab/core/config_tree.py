"""A saved config as a plain tree: every entry with its path, the path as a config key, and whether a ``_target_``
names a subclass of a given class, checked without running code from the directory the config came from."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any


def walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any, Any]]:
    """(path of the parent, key or list index, value) for every entry of every mapping and list in a nested dict /
    list structure."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield path, i, value
            yield from walk(value, (*path, i))


def dotted(path: tuple, key: Any) -> str:
    """``walk``'s path and key as a config key: ``callbacks.x``, ``tags[1]``."""
    out = ""
    for part in (*path, key):
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return out


def _inside(module: str, directory: Path) -> bool:
    """Whether importing ``module`` would load any of its packages or itself from ``directory``: each dotted prefix
    is found on the path its parent would search, without importing anything (``runs.exp1.callbacks`` with the job
    directory ``runs/exp1``: ``runs`` lies outside it, ``runs.exp1`` inside)."""
    root, locations = directory.resolve(), None
    for part in module.split("."):
        try:
            spec = PathFinder.find_spec(part, locations)
        except (ImportError, ValueError):
            return False
        if spec is None:  # not on the path (a built-in, or nothing): nothing of the directory's would load
            return False
        places = [spec.origin] if spec.origin else []
        places += list(spec.submodule_search_locations or [])
        if any(Path(p).resolve().is_relative_to(root) for p in places if p and p != "namespace"):
            return True
        locations = list(spec.submodule_search_locations or [])
        if not locations:
            return False
    return False


def subclass_of(target: str, base: str, untrusted: Path | None = None) -> bool:
    """Whether ``target`` names a class that subclasses ``base``. Imports the target's module (a user's own callback
    lives in one) but instantiates nothing; never a module that would be imported from ``untrusted`` (the directory
    the config came from: a ``callbacks.py`` shipped beside a job would run on import)."""
    module, _, name = target.rpartition(".")
    if not module or not all(part.isidentifier() for part in target.split(".")):
        return False
    if untrusted is not None and _inside(module, untrusted):
        return False
    try:
        cls = getattr(importlib.import_module(module), name)
        base_module, _, base_name = base.rpartition(".")
        base_cls = getattr(importlib.import_module(base_module), base_name)
    except Exception:  # not importable: not allowed
        return False
    return isinstance(cls, type) and issubclass(cls, base_cls)
