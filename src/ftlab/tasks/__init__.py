"""The tasks ftlab fine-tunes for: each task's spec (``specs.py``, what the config's validation reads without loading
any library) and its ``Task`` object (``base.py``, one file per task), listed in ``registry.py``.

Nothing is imported here, so that the light modules of this package load without the heavy ones.
"""
