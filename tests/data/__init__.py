"""Tests of ftlab.data."""
