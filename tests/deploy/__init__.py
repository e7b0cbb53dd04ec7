"""Tests of ftlab.deploy."""
