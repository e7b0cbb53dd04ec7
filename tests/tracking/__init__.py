"""Tests of ftlab.tracking."""
