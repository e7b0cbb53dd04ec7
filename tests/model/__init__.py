"""Tests of ftlab.model."""
