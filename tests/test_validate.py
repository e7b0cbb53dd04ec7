"""Every shipped config composes, and validation reports every problem with key, value and choices."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ftlab.validate import ConfigError, validate_config
from tests.helpers import CONF_DIR, ROOT, compose, tiny_overrides

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")


def group_options():
    for group in GROUPS:
        for option in sorted((CONF_DIR / group).glob("*.yaml")):
            yield group, option.stem


def test_groups_are_the_documented_ones():
    assert GROUPS == ["callbacks", "data", "debug", "experiment", "hparams_search", "logger", "model", "optimizer",
                      "scheduler", "strategy", "trainer"]


@pytest.mark.parametrize("group,option", list(group_options()))
def test_every_option_composes_and_resolves(group, option, tmp_path):
    from omegaconf import OmegaConf

    cfg = compose([f"{group}={option}", f"output_dir={tmp_path}"])
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    # conf/config.yaml's 2e-4 everywhere but in experiment=lm_bbc, which sets 1e-4; every optimizer takes it.
    expected = 1e-4 if (group, option) == ("experiment", "lm_bbc") else 2e-4
    assert resolved["lr"] == expected and resolved["optimizer"]["lr"] == expected


def test_slurm_launcher_composes_and_follows_the_trainer(tmp_path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", return_hydra_config=True,
                            overrides=["hydra/launcher=slurm", "trainer=ddp_cpu", f"output_dir={tmp_path}"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher["tasks_per_node"] == 2 and launcher["nodes"] == 1 and launcher["signal_delay_s"] == 120


def test_gpu_cluster_launcher_spans_nodes_with_one_task_per_gpu(tmp_path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", return_hydra_config=True,
                            overrides=["hydra/launcher=slurm_gpu", "trainer=ddp", "trainer.devices=4",
                                       "trainer.num_nodes=2", "hydra.launcher.account=proj",
                                       "hydra.launcher.constraint=a100", f"output_dir={tmp_path}"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert {k: launcher[k] for k in ("nodes", "tasks_per_node", "gpus_per_node", "partition", "account", "constraint",
                                     "timeout_min", "mem_gb", "signal_delay_s")} == {
        "nodes": 2, "tasks_per_node": 4, "gpus_per_node": 4, "partition": "gpu", "account": "proj",
        "constraint": "a100", "timeout_min": 1440, "mem_gb": 200, "signal_delay_s": 120}


def test_default_config_is_valid():
    validate_config(compose(["output_dir=/tmp/unused"]))


@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_experiment_is_valid(experiment):
    """The ready experiments validate against their real checkpoints and data (SmolLM2 is dequantised once)."""
    validate_config(compose([f"experiment={experiment}", "output_dir=/tmp/unused"]))


def test_task_errors_name_key_value_and_choices(tiny_model_dir, tiny_csv, tmp_path):
    base = tiny_overrides(tiny_model_dir, tiny_csv, tmp_path)
    with pytest.raises(ConfigError) as err:
        validate_config(compose(base + ["task=summarization"]))
    assert "task='summarization': unknown value; valid choices: text_classification, token_classification, " \
           "causal_lm" in str(err.value)
    with pytest.raises(ConfigError) as err:
        validate_config(compose(base + ["task=causal_lm", "export_onnx=true"]))
    assert err.value.problems == ["monitor='val/acc': unknown value; valid choices: val/loss, val/ppl"]  # every task
    # exports to ONNX
    with pytest.raises(ConfigError) as err:
        validate_config(compose(base + ["task=token_classification", "monitor=val/f1"]))
    assert err.value.problems == [f"data.tokens_column=None: column absent from {tiny_csv}; columns there: text, label",
                                  f"data.tags_column=None: column absent from {tiny_csv}; columns there: text, label"]


def test_trainer_group_configures_lightning_trainer_itself():
    cfg = compose(["++trainer.max_steps=3", "++trainer.limit_val_batches=2", "++trainer.overfit_batches=1"])
    assert cfg.trainer._target_ == "lightning.Trainer"
    assert (cfg.trainer.max_steps, cfg.trainer.limit_val_batches, cfg.trainer.overfit_batches) == (3, 2, 1)


def problems(overrides: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(compose(overrides))
    return info.value.problems


def test_each_error_names_key_value_and_choices(tiny_model_dir, tiny_csv, tmp_path):
    base = tiny_overrides(tiny_model_dir, tiny_csv, tmp_path)
    cases = {
        "strategy.name=partail":
            "strategy.name='partail': unknown value; valid choices: full, partial, head_only, bitfit",
        "strategy=partial strategy.trainable_layers=3":
            "strategy.trainable_layers=3: the model has only 2 layers; valid: -2..2",
        f"data.path={tmp_path}/missing.csv": f"data.path='{tmp_path}/missing.csv': no such file or directory",
        "data.text_column=body": "data.text_column='body': column absent from",
        "data.label_column=topic": "data.label_column='topic': column absent from",
        "lr=0": "lr=0: must be a positive float",
        "lr=-1e-5": "lr=-1e-05: must be a positive float",
        "batch_size=0": "batch_size=0: must be a positive int",
        "scheduler.name=triangle": "scheduler.name='triangle': unknown value; valid choices: linear, cosine",
        "monitor=val/accuracy": "monitor='val/accuracy': unknown value; valid choices: val/acc",
        f"model.pretrained_model_name_or_path={tmp_path}": f"='{tmp_path}': no config.json there",
        "strategy.lr_grid=[2e-4,1e-4]": "strategy.lr_grid=[0.0002, 0.0001]: must be null or a list of positive "
                                        "learning rates in increasing order",
        "strategy.lr_grid=[]": "strategy.lr_grid=[]: must be null or a list of positive",
        "strategy.lr_grid=[0,1e-4]": "strategy.lr_grid=[0, 0.0001]: must be null",
    }
    for override, expected in cases.items():
        found = problems(base + override.split())
        assert len(found) == 1, (override, found)
        assert expected in found[0], (override, found)


def test_fewer_than_two_classes(tiny_model_dir, tmp_path):
    one_class = tmp_path / "one.csv"
    one_class.write_text("text,label\n" + "".join(f"goal match {i},sport\n" for i in range(10)))
    found = problems(tiny_overrides(tiny_model_dir, one_class, tmp_path))
    assert found == ["data.label_column='label': found 1 class(es); classification needs at least 2"]


def test_all_problems_reported_at_once(tiny_model_dir, tiny_csv, tmp_path):
    found = problems(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path) + [
        "lr=-1", "batch_size=0", "strategy.name=nope", "data.label_column=topic"])
    assert [p.split("=")[0] for p in found] == ["lr", "batch_size", "data.label_column", "strategy.name"]
    message = str(ConfigError(found))
    assert message.startswith("4 problem(s) in the config:")


def test_strategy_errors_found_before_loading_weights(tiny_model_dir, tiny_csv, tmp_path):
    base = tiny_overrides(tiny_model_dir, tiny_csv, tmp_path)
    # The settings first: the model's architecture is built (and the strategy checked on it) once they are sound.
    assert problems(base + ["strategy=pattern", "strategy.train=[classifer]", "lr=0"]) == [
        "lr=0: must be a positive float"]
    assert problems(base + ["strategy=pattern", "strategy.train=[classifer]"]) == [
        "strategy.train: 'classifer' matches no parameter; closest names: classifier.bias, classifier.weight"]
    found = problems(base + ["strategy=gradual_unfreezing", "strategy.unit=batch", "strategy.every=0",
                             "layer_decay=1.5"])
    assert [p.split(":")[0] for p in found] == ["strategy.every=0", "strategy.unit='batch'",
                                               "layer_decay=1.5"]
    found = problems(base + ["strategy=partial", "strategy.trainable_layers=0", "strategy.train_head=false"])
    assert len(found) == 1 and "selects no parameter to train" in found[0]


@pytest.mark.parametrize("overrides", [["strategy=partial", "strategy.trainable_layers=-2"],
                                       ["strategy=bitfit"], ["strategy=gradual_unfreezing"],
                                       ["strategy=pattern", "strategy.freeze=[embeddings]"],
                                       ["layer_decay=0.8"]])
def test_valid_strategy_configs_pass(tiny_model_dir, tiny_csv, tmp_path, overrides):
    validate_config(compose(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path) + overrides))


def test_precision_and_accelerator_must_run_here(tiny_model_dir, tiny_csv, tmp_path):
    import torch

    base = tiny_overrides(tiny_model_dir, tiny_csv, tmp_path)
    assert problems(base + ["trainer.precision=16-mixed"]) == [
        "trainer.precision='16-mixed': float16 training needs a CUDA GPU; on CPU use bf16-mixed or 32-true"]
    assert "trainer.precision='8-bit': unknown value; valid choices: 32-true" in problems(
        base + ["trainer.precision=8-bit"])[0]
    for ok in ("32-true", "bf16-mixed", "bf16-true"):
        validate_config(compose(base + [f"trainer.precision={ok}"]))
    if not torch.cuda.is_available():
        assert problems(base + ["trainer=ddp", "trainer.accelerator=gpu"])[0].startswith(
            "trainer.accelerator='gpu': no CUDA GPU is visible here")


def test_deepspeed_zero3_is_refused_and_a_missing_install_named(tiny_model_dir, tiny_csv, tmp_path, monkeypatch):
    import importlib.util

    base = tiny_overrides(tiny_model_dir, tiny_csv, tmp_path)
    assert problems(base + ["trainer.strategy=deepspeed_stage_3"]) == [
        "trainer.strategy='deepspeed_stage_3': ZeRO stage 3 is not supported; valid choices: deepspeed_stage_1, "
        "deepspeed_stage_2, or trainer=fsdp to shard the weights"]
    found = problems(base + ["trainer.strategy={_target_: x.DeepSpeedStrategy, stage: 3}"])
    assert len(found) == 1 and found[0].startswith("trainer.strategy=") and "ZeRO stage 3" in found[0]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    assert problems(base + ["trainer.strategy=deepspeed_stage_2"]) == [
        "trainer.strategy='deepspeed_stage_2': needs the deepspeed extra (deepspeed missing): "
        "pip install -e '.[deepspeed]'"]


def test_optimizer_keys_are_its_constructor_arguments(tiny_model_dir, tiny_csv, tmp_path):
    base = tiny_overrides(tiny_model_dir, tiny_csv, tmp_path)
    [found] = problems(base + ["++optimizer.layer_decay=0.8"])
    assert found.startswith("optimizer.layer_decay: unknown option of torch.optim.AdamW; valid: ")
    assert found.endswith("; layer-wise LR decay is the top-level layer_decay")
    assert problems(base + ["optimizer.lr=0"]) == ["optimizer.lr=0: must be a positive float"]


@pytest.mark.slow
def test_validating_a_gguf_checkpoint_does_not_dequantise_it(tmp_path, monkeypatch):
    """Validation reads the architecture from the GGUF metadata; dequantising (seconds to minutes) waits for
    training."""
    from ftlab.model import loading as models

    def refuse(*args, **kwargs):
        raise AssertionError("validation dequantised the GGUF checkpoint")

    monkeypatch.setenv("FTLAB_CACHE", str(tmp_path))  # no dequantised copy cached
    monkeypatch.setattr(models, "dequantized_gguf", refuse)
    validate_config(compose(["experiment=lm_bbc", "output_dir=/tmp/unused"]))
    assert problems(["experiment=lm_bbc", "output_dir=/tmp/unused", "strategy=partial",
                     "strategy.trainable_layers=31"]) == [
        "strategy.trainable_layers=31: the model has only 30 layers; valid: -30..30 (negative: bottom |k|)"]


HEAVY = ("lightning", "torchmetrics", "transformers", "torch", "datasets", "peft")  # seconds to import, each


def test_validation_imports_no_training_library(tmp_path):
    """A fresh process imports the validation and refuses a wrong setting with none of the training libraries loaded."""
    code = ("import sys\nfrom hydra import compose, initialize_config_dir\nimport ftlab.validate as v\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[1:]))\n"
            f"with initialize_config_dir(config_dir={str(CONF_DIR)!r}, version_base='1.3'):\n"
            f"    cfg = compose(config_name='config', overrides=['lr=abc', 'output_dir={tmp_path}'])\n"
            "try:\n    v.validate_config(cfg)\nexcept v.ConfigError as err:\n    print(err)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[1:]))\n")
    out = subprocess.run([sys.executable, "-c", code, *HEAVY], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["[]", "lr='abc': must be a positive float", "[]"]


def test_a_wrong_setting_is_refused_on_the_command_line_before_any_training_library_loads(tmp_path):
    proc = subprocess.run([sys.executable, "-X", "importtime", "run.py", "lr=abc", f"hydra.run.dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"})
    lines = proc.stderr.splitlines()
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in lines if line.startswith("import time:")}
    assert proc.returncode == 1
    assert [line for line in lines if not line.startswith("import time:")] == [
        "ftlab: lr='abc': must be a positive float"]
    assert "ftlab" in imported and not imported & set(HEAVY), sorted(imported & set(HEAVY))
