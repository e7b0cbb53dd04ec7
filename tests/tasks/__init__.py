"""Tests of ftlab.tasks."""
