"""Tests of ftlab.core."""
