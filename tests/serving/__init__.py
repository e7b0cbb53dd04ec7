"""Tests of ftlab.serving."""
