"""What a command-line override as Hydra saves it (``.hydra/overrides.yaml``) sets: its key and its value as
written. Keys hold no ``=``, so the first one ends the key; ``+``, ``++`` (add) and ``~`` (delete) are how, not
what, so they are dropped. A key keeps its ``@package`` as Hydra's own parser names it."""

from __future__ import annotations


def override_key(override: str) -> str:
    """``+trainer.max_steps=5`` -> ``trainer.max_steps``; ``~callbacks.x`` -> ``callbacks.x``."""
    return override.lstrip("+~").split("=", 1)[0]


def override_value(override: str) -> str | None:
    """The value as written (``lr=1e-5,2e-5`` -> ``1e-5,2e-5``); None for a deletion without one."""
    return override.split("=", 1)[1] if "=" in override else None
