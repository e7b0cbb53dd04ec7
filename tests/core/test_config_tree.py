"""A saved config's ``_target_`` may name a user's own subclass, but no module is ever imported from the job
directory the config came from: a module shipped beside a job would run when imported."""

from __future__ import annotations

import pytest

from ftlab.core.checks import ConfigError
from ftlab.core.config_tree import dotted, subclass_of, walk
from ftlab.core.saved_config import load_saved_config

CALLBACK = """import pathlib
pathlib.Path({marker!r}).write_text("imported")
from lightning.pytorch.callbacks import Callback
class Mine(Callback):
    pass
"""


def shipped_job(root, marker):
    """A job directory whose saved config names ``shipped_cb.Mine``, with the module beside it."""
    job = root / "job"
    (job / ".hydra").mkdir(parents=True)
    (job / "shipped_cb.py").write_text(CALLBACK.format(marker=str(marker)))
    config = job / ".hydra" / "config.yaml"
    config.write_text("monitor: val/acc\ncallbacks:\n  mine:\n    _target_: shipped_cb.Mine\n")
    return job, config


def test_a_module_shipped_in_the_job_directory_is_never_imported(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    job, config = shipped_job(tmp_path, marker)
    monkeypatch.syspath_prepend(str(job))  # as `python -m ftlab.export` run from inside the job directory would
    with pytest.raises(ConfigError, match=r"callbacks\.mine\._target_='shipped_cb\.Mine', a target ftlab's configs"):
        load_saved_config(config, "resume")
    assert not marker.exists()


def test_a_users_own_callback_installed_elsewhere_is_a_valid_subclass(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    job, config = shipped_job(tmp_path, marker)
    elsewhere = tmp_path / "project"
    elsewhere.mkdir()
    (job / "shipped_cb.py").rename(elsewhere / "shipped_cb.py")
    monkeypatch.syspath_prepend(str(elsewhere))
    monkeypatch.delitem(__import__("sys").modules, "shipped_cb", raising=False)
    assert load_saved_config(config, "resume").callbacks.mine._target_ == "shipped_cb.Mine"
    assert marker.read_text() == "imported"  # the user's module, imported to check the class: allowed
    assert not subclass_of("shipped_cb.Mine", "lightning.pytorch.callbacks.Callback", untrusted=elsewhere)
    assert not subclass_of("os.system", "lightning.pytorch.callbacks.Callback")


def test_walk_and_dotted_name_every_entry():
    tree = {"a": {"b": [1, {"_target_": "x"}]}}
    assert [dotted(p, k) for p, k, _ in walk(tree)] == ["a", "a.b", "a.b[0]", "a.b[1]", "a.b[1]._target_"]


def test_a_job_directory_below_a_package_on_the_path_is_never_imported_from(tmp_path, monkeypatch):
    """``runs.exp1.shipped_cb.Mine`` with the job in ``runs/exp1``: the top package ``runs`` lies outside the job,
    its sub-package inside; found without importing, refused."""
    marker = tmp_path / "ran"
    job, config = shipped_job(tmp_path / "runs", marker)
    (tmp_path / "runs" / "__init__.py").write_text("")
    (job / "__init__.py").write_text("")
    config.write_text("callbacks:\n  mine:\n    _target_: runs.job.shipped_cb.Mine\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"runs\.job\.shipped_cb\.Mine"):
        load_saved_config(config, "resume")
    assert not marker.exists()
