"""The progress bars of transformers ("Loading weights", "Writing model shards") and datasets ("Casting", "Saving the
dataset") time steps of a second or two and, in a log file, become lines of escape codes: every ftlab entry point
turns them off. A job's own progress (one bar, or plain lines in a file) is not theirs."""

from __future__ import annotations


def hide_library_bars() -> None:
    """Turn off the progress bars of transformers and datasets for this process."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
