"""``data.group_by_length`` (batches of similar lengths, ``samplers.LengthGroupedSampler``): its check, which needs no
library."""

from __future__ import annotations

from ftlab.core.checks import Checker


def check_group_by_length(c: Checker) -> None:
    """``data.group_by_length`` is a boolean."""
    c.flag("data.group_by_length")
