"""One table of optional extras, one check, one install hint."""

from __future__ import annotations

import importlib.util

import pytest

from ftlab.core.checks import FtlabError
from ftlab.core.extras import EXTRAS, ExtraMissing, extra_problem, require_extras
from tests.helpers import ROOT


@pytest.fixture
def without(monkeypatch):
    """Make the named modules look uninstalled."""
    def hide(*names: str) -> None:
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in names else real(name, *a))
    return hide


def test_installed_extras_have_no_problem():
    # The dev install carries onnx, serve, deepspeed and optuna (pyproject's dev extra).
    assert all(extra_problem(extra) is None for extra in ("onnx", "serve", "deepspeed", "optuna"))
    require_extras("a tool", "onnx", "serve")


def test_a_missing_module_is_named_with_the_command_that_installs_it(without):
    without("onnxscript", "litserve")
    assert extra_problem("onnx") == "needs the onnx extra (onnxscript missing): pip install -e '.[onnx]'"
    with pytest.raises(ExtraMissing) as err:
        require_extras("serving", "serve", "onnx")
    assert str(err.value) == ("serving needs the serve extra and the onnx extra (litserve, onnxscript missing): "
                              "pip install -e '.[serve,onnx]'")
    assert isinstance(err.value, FtlabError)  # the tools print it as one line, without a traceback


def test_every_extra_is_declared_in_pyproject():

    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(EXTRAS) <= set(declared["project"]["optional-dependencies"])
