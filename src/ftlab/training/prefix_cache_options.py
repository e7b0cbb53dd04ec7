"""The frozen-prefix cache's settings (``cache_frozen``, ``cache_frozen_memory``) and what they need of the strategy and
the trainer: their check, which needs no library (the cache itself is ``prefix_cache.py``)."""

from __future__ import annotations

import argparse

from ftlab.core.checks import Checker, memory_mib


def check_cache_frozen(c: Checker) -> None:
    """``cache_frozen`` needs deterministic frozen modules and one process per device; ``cache_frozen_memory`` is a
    size (``4GB``)."""
    c.flag("cache_frozen")
    memory = c.get("cache_frozen_memory")
    try:
        memory_mib(str(memory))
    except argparse.ArgumentTypeError:
        c.fail("cache_frozen_memory", "must be a memory size > 0 such as 4GB or 512MiB (bare numbers: MiB)")
    if c.get("cache_frozen") is not True:
        return
    if c.get("strategy.frozen_dropout") is not False:
        c.fail("cache_frozen", "needs strategy.frozen_dropout=false: with dropout in the frozen modules their output "
                               "changes every epoch and a cache would freeze one draw of it")
    if c.get("strategy.name") == "gradual_unfreezing":
        c.fail("cache_frozen", "gradual_unfreezing trains every block eventually: there is no frozen prefix to cache")
    if c.get("strategy.quantize"):
        c.fail("cache_frozen", "not with a quantized base (strategy.quantize); valid: cache_frozen=false")
    if c.trainer.shards_the_model:
        c.fail("cache_frozen", f"trainer.strategy={c.get('trainer.strategy')!r} is not supported with the cache; "
                               "valid: auto, ddp and its variants")
