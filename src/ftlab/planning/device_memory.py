"""``device_memory``, one device's memory for the plan's fits table (``plan_only``): its check, which needs no library
(the plan per device is ``devices.py``)."""

from __future__ import annotations

import argparse

from ftlab.core.checks import Checker, memory_mib


def check_device_memory(c: Checker) -> None:
    """``device_memory`` (one device's memory, for the fits table) is a memory size such as 80GB."""
    try:
        memory_mib(str(c.get("device_memory")))
    except argparse.ArgumentTypeError as err:
        c.fail("device_memory", str(err))
