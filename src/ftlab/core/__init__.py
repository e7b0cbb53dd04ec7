"""Shared by every stage: errors and config checks, packaged assets, atomic files, optional extras, saved configs."""
