"""Tests of ftlab.sweeps."""
