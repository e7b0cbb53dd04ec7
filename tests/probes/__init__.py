"""Tests of ftlab.probes."""
