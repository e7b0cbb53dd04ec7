"""Tests of ftlab.planning."""
