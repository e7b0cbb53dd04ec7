"""``resume=<job dir>`` (``ftlab.training.resumed_job``): a job directory may come from someone else, so a bad one
is one clear line, nothing it names is instantiated, resolved or imported before it is checked, and an override that
resuming would ignore is refused by name."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from ftlab.core.checks import ConfigError
from ftlab.training.resumed_job import resume_config
from tests.helpers import compose, tiny_overrides


@pytest.fixture(scope="module")
def saved_config(tiny_model_dir, tiny_csv, tmp_path_factory):
    """A genuine job config as Hydra saves it (unresolved), with a user's own callback added on the command line."""
    out = tmp_path_factory.mktemp("saved-job")
    cfg = compose(tiny_overrides(tiny_model_dir, tiny_csv, out, "logger=csv", "trainer=fsdp",
                                 "trainer.strategy._target_=tests.cpu_strategies.CPUFSDPStrategy",
                                 "+callbacks.killer._target_=tests.helpers.SignalAt", "+callbacks.killer.step=7"))
    return OmegaConf.to_container(cfg, resolve=False)


def fake_job(root: Path, config: dict | str | None, checkpoint: bool = True) -> Path:
    """A job directory with ``.hydra/config.yaml`` (a dict, raw text, or none) and ``checkpoints/last.ckpt``."""
    root.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (root / ".hydra").mkdir()
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        (root / ".hydra" / "config.yaml").write_text(text)
    if checkpoint:
        (root / "checkpoints").mkdir()
        torch.save({"global_step": 3}, root / "checkpoints" / "last.ckpt")  # a readable checkpoint archive
    return root


def _cut(checkpoint: Path) -> Path:
    """Cut ``checkpoint`` to half its size (a disk that filled, a copy interrupted); returns its job directory."""
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    return checkpoint.parent.parent


def _set(config: dict, dotted: str, value) -> dict:
    """A copy of ``config`` with ``dotted`` set to ``value`` (missing or null parents become mappings)."""
    config = copy.deepcopy(config)
    node = config
    *parents, last = dotted.split(".")
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[last] = value
    return config


# Targets that ftlab's conf/ files use (the allowlist is read from them), which a refusal must list.
ALLOWED_SAMPLE = ["lightning.Trainer", "lightning.pytorch.callbacks.ModelCheckpoint",
                  "lightning.pytorch.loggers.CSVLogger", "lightning.pytorch.loggers.WandbLogger",
                  "lightning.pytorch.strategies.FSDPStrategy", "torch.optim.AdamW"]

RESUME_CASES = {
    "missing-dir": (lambda tmp, c: tmp / "nope", ["no such directory", "give a job directory"]),
    "not-a-job-dir": (lambda tmp, c: fake_job(tmp / "job", None),
                      ["not a job directory (no .hydra/config.yaml there)"]),
    "no-last-checkpoint": (lambda tmp, c: fake_job(tmp / "job", c, checkpoint=False),
                           ["the job has no checkpoints/last.ckpt to resume from"]),
    "truncated-last-checkpoint": (
        lambda tmp, c: _cut(fake_job(tmp / "job", c) / "checkpoints" / "last.ckpt"),
        ["checkpoints/last.ckpt is truncated or corrupt (File is not a zip file); the job cannot continue from it"]),
    "config-not-yaml": (lambda tmp, c: fake_job(tmp / "job", "model: {broken\n  - ["),
                        ["config.yaml cannot be parsed (ParserError: line 2, column 5: expected ',' or '}', "
                         "but got '['",
         "valid: the YAML config Hydra saved for the job"]),
    "config-not-a-mapping": (lambda tmp, c: fake_job(tmp / "job", "- a\n- b\n"),
                             ["is a ListConfig, not a mapping of config keys"]),
    "logger-target-os-system": (
        lambda tmp, c: fake_job(tmp / "job", _set(c, "logger", {"evil": {"_target_": "os.system",
                                                                          "command": "echo pwned"}})),
        ["logger.evil._target_='os.system', a target ftlab's configs do not use; allowed: ", *ALLOWED_SAMPLE,
         ", or a subclass of lightning.pytorch.loggers.Logger"]),
    "callback-target-function": (
        lambda tmp, c: fake_job(tmp / "job", _set(c, "callbacks.x", {"_target_": "subprocess.run", "args": "ls"})),
        ["callbacks.x._target_='subprocess.run'", "or a subclass of lightning.pytorch.callbacks.Callback"]),
    "nested-target-in-callback-arguments": (
        lambda tmp, c: fake_job(tmp / "job", _set(c, "callbacks.model_checkpoint.dirpath",
                                                  {"_target_": "builtins.eval", "_args_": ["1"]})),
        ["callbacks.model_checkpoint.dirpath._target_='builtins.eval'", "allowed: ", *ALLOWED_SAMPLE]),
    "trainer-target-replaced": (
        lambda tmp, c: fake_job(tmp / "job", _set(c, "trainer._target_", "os.system")),
        ["trainer._target_='os.system'", "allowed: ", *ALLOWED_SAMPLE]),
    "target-from-an-interpolation": (
        lambda tmp, c: fake_job(tmp / "job", _set(c, "optimizer._target_", "${oc.env:EVIL_TARGET}")),
        ["optimizer._target_='${oc.env:EVIL_TARGET}'", "or a subclass of torch.optim.Optimizer"]),
    "resolver-builds-a-target": (
        lambda tmp, c: fake_job(tmp / "job", _set(c, "callbacks.x", "${oc.create:{_target_: shutil.copyfile, "
                                                  "src: /etc/hostname, dst: /tmp/copied}}")),
        ["callbacks.x='${oc.create:{_target_: shutil.copyfile", "calls the resolver 'oc.create'",
         "valid: the value itself, or one of ${ftlab.monitor_mode:${monitor}}, ${hydra:runtime.output_dir}, "
         "${oc.env:FTLAB_CACHE,'~/.cache/ftlab'}"]),
    "resolver-after-an-escaped-backslash": (  # \\ is a literal backslash, then a real interpolation
        lambda tmp, c: fake_job(tmp / "job", _set(c, "data.cache_dir", "x\\\\${oc.env:SECRET_TOKEN}")),
        ["calls the resolver 'oc.env'"]),
    "resolver-nested-in-an-allowed-one": (
        lambda tmp, c: fake_job(tmp / "job", _set(c, "data.cache_dir", "${oc.env:FTLAB_CACHE,${oc.env:SECRET}}")),
        ["data.cache_dir='${oc.env:FTLAB_CACHE,${oc.env:SECRET}}', which calls the resolver 'oc.env'"]),
    "resolver-in-a-list-item": (
        lambda tmp, c: fake_job(tmp / "job", _set(c, "logger.csv.flush_logs_every_n_steps",
                                                  ["ok", "${oc.decode:'{_target_: os.system}'}"])),
        ["logger.csv.flush_logs_every_n_steps[1]=", "calls the resolver 'oc.decode'"]),
    "resolver-name-from-an-interpolation": (
        lambda tmp, c: fake_job(tmp / "job", _set(c, "seed", "${${name}:x}")),
        ["seed='${${name}:x}', which calls the resolver '$'"]),
    "env-variable-ftlab-does-not-read": (
        lambda tmp, c: fake_job(tmp / "job", _set(c, "data.cache_dir", "${oc.env:AWS_SECRET_ACCESS_KEY}")),
        ["data.cache_dir='${oc.env:AWS_SECRET_ACCESS_KEY}', which calls the resolver 'oc.env'"]),
    "callback-moved-into-the-strategy-by-interpolation": (
        lambda tmp, c: fake_job(tmp / "job", _set(c, "trainer.strategy", "${callbacks.killer}")),
        ["config.yaml (resolved) sets trainer.strategy._target_='tests.helpers.SignalAt'",
         "or a subclass of lightning.pytorch.strategies.Strategy"]),
    "trust-remote-code": (
        lambda tmp, c: fake_job(tmp / "job", _set(c, "model.trust_remote_code", True)),
        ["model.trust_remote_code=True", "valid: false (or absent)"]),
}


@pytest.mark.parametrize("name", list(RESUME_CASES))
def test_bad_resume_directory_is_one_clear_line(name, saved_config, tmp_path):
    make, fragments = RESUME_CASES[name]
    job = make(tmp_path, saved_config)
    with pytest.raises(ConfigError) as exc:
        resume_config(OmegaConf.create({"resume": str(job)}))
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"resume='{job}': "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_resume_refuses_a_foreign_target_before_instantiating_anything(saved_config, tmp_path):
    from ftlab.train import train

    marker = tmp_path / "pwned"
    job = fake_job(tmp_path / "job", _set(saved_config, "logger", {"evil": {"_target_": "os.system",
                                                                             "command": f"touch {marker}"}}))
    with pytest.raises(ConfigError, match=r"logger\.evil\._target_='os\.system'"):
        train(OmegaConf.create({"resume": str(job)}))
    assert not marker.exists()
    assert sorted(p.name for p in job.iterdir()) == [".hydra", "checkpoints"]  # nothing written into the job


def test_resume_resolves_nothing_that_calls_code(saved_config, tmp_path):
    from ftlab.train import train

    source, copied = tmp_path / "source", tmp_path / "copied"
    source.write_text("secret")
    job = fake_job(tmp_path / "job", _set(saved_config, "callbacks.x", "${oc.create:{_target_: shutil.copyfile, "
                                                                         f"src: {source}, dst: {copied}}}}}"))
    with pytest.raises(ConfigError, match=r"callbacks\.x=.*calls the resolver 'oc\.create'"):
        train(OmegaConf.create({"resume": str(job)}))
    assert not copied.exists()
    assert sorted(p.name for p in job.iterdir()) == [".hydra", "checkpoints"]


def test_resume_with_a_changed_setting_is_refused_naming_it(saved_config, tiny_model_dir, tiny_csv, tmp_path,
                                                            monkeypatch):
    import ftlab.training.resumed_job as resume

    job = fake_job(tmp_path / "job", saved_config)
    again = ["lr=2e-4", f"seed={saved_config['seed']}", "strategy=full"]  # the saved values: nothing is ignored
    changed = ["lr=0.5", "trainer.max_epochs=7", "strategy=lora", "debug=smoke"]
    assert saved_config["lr"] == 2e-4 and saved_config["strategy"]["name"] == "full"
    again.append("output_dir=/elsewhere")  # what a DDP rank > 0 is relaunched with: never an ignored setting
    for given, ignored in ((again, None),
                           ([again[1], *changed], "lr=0.5, trainer.max_epochs=7, strategy=lora, debug=smoke")):
        given = [f"resume={job}", *given]
        monkeypatch.setattr(resume, "command_line_overrides", lambda given=given: given)
        cfg = compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, *given))
        if ignored is None:
            assert resume_config(cfg).lr == 2e-4
            continue
        with pytest.raises(ConfigError) as exc:
            resume_config(cfg)
        assert str(exc.value) == (f"resume='{job}' continues the job with its saved settings, so these overrides "
                                  f"would be ignored: {ignored}; valid: resume=<job dir> alone, or a new job (not "
                                  "resumed) to change a setting")


def test_resume_accepts_a_genuine_saved_config(saved_config, tmp_path):
    job = fake_job(tmp_path / "job", saved_config)
    cfg = resume_config(OmegaConf.create({"resume": str(job)}))
    assert cfg.output_dir == cfg.resume == str(job.resolve())
    assert cfg.callbacks.killer._target_ == "tests.helpers.SignalAt"  # a user's own Lightning callback
    assert cfg.trainer.strategy._target_ == "tests.cpu_strategies.CPUFSDPStrategy"  # a Lightning strategy
    assert cfg.logger.csv._target_ == "lightning.pytorch.loggers.CSVLogger"
