"""Tests of ftlab.strategies."""
