"""``model.compile`` (``torch.compile`` of the model for training, applied by ``FineTuneModule``): its check, which
needs no library."""

from __future__ import annotations

from ftlab.core.checks import Checker


def check_compile(c: Checker) -> None:
    """``model.compile`` is a boolean, and not (yet) combined with sharding or the frozen-prefix cache."""
    c.flag("model.compile")
    if c.get("model.compile") is not True:
        return
    if c.trainer.shards_the_model:
        c.fail("model.compile", f"not supported with trainer.strategy={c.get('trainer.strategy')!r}; valid: "
                                "model.compile=false, or trainer.strategy auto / ddp")
    if c.get("cache_frozen") is True:
        c.fail("model.compile", "not with cache_frozen=true (the cache swaps the frozen blocks' forward every step, "
                                "which would recompile); valid: one of the two")
