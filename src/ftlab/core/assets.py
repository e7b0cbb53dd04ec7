"""Resolve paths of assets shipped inside installed packages (``pkg://package/sub/path``)."""

from __future__ import annotations

import importlib.util
import os
import sysconfig
from pathlib import Path

PKG_SCHEME = "pkg://"


def resolve_path(uri: str) -> str:
    """Turn ``pkg://package/sub/path`` into a filesystem path; other strings are returned expanded.

    The package is located with ``importlib.util.find_spec`` rather than imported, because some asset
    packages cannot be imported without optional dependencies.
    """
    if not uri.startswith(PKG_SCHEME):
        return os.path.expanduser(uri)
    package, _, sub = uri[len(PKG_SCHEME):].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} (from {uri!r}) is not installed")
    return str(Path(list(spec.submodule_search_locations)[0]) / sub)


def is_installed_file(path: str | Path) -> bool:
    """Whether ``path`` lies among the installed packages (site-packages): an asset shipped in a package, which its
    user cannot correct."""
    resolved = Path(path).resolve()
    roots = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    return any(resolved.is_relative_to(root) for root in roots)
