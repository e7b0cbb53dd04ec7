"""Importing ftlab: what every entry point gets from it."""

from __future__ import annotations

import logging

import ftlab  # noqa: F401


def test_deepspeeds_guess_about_the_accelerator_is_dropped_and_its_other_records_kept():
    logger = logging.getLogger("DeepSpeed")

    def record(message: str) -> logging.LogRecord:
        return logger.makeRecord("DeepSpeed", logging.WARNING, __file__, 1, message, None, None)

    assert not logger.filter(record("Setting accelerator to CPU. If you have GPU or other accelerator, we were unable "
                                    "to detect it."))
    assert logger.filter(record("ZeRO stage 2 cannot be used with this optimizer"))
