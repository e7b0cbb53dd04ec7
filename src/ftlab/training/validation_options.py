"""``curve_points``, about how many validations a job makes (the points of its budget curve): its check, which needs
no library (the schedule itself is ``validation_schedule.py``)."""

from __future__ import annotations

from ftlab.core.checks import Checker


def check_curve_points(c: Checker) -> None:
    """``curve_points`` is a positive integer or null."""
    if c.get("curve_points") is not None:
        c.positive("curve_points", int)
