"""Tests of ftlab.training."""
