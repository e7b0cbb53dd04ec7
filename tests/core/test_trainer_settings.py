"""One parse of the trainer settings: precision names, devices, and what a distributed strategy does."""

from __future__ import annotations

import pytest

from ftlab.core.trainer_settings import TrainerSettings, trainer_settings


@pytest.mark.parametrize(("precision", "name", "dtype", "weight_bytes", "activation_bytes", "mixed"), [
    (None, "32-true", "float32", 4, 4, False),  # null: Lightning's default
    ("32", "32-true", "float32", 4, 4, False),  # Lightning's alias of 32-true
    ("bf16-mixed", "bf16-mixed", "float32", 4, 2, True),
    ("16-mixed", "16-mixed", "float32", 4, 2, True),
    ("bf16-true", "bf16-true", "bfloat16", 2, 2, False),
    ("16-true", "16-true", "float16", 2, 2, False),
    ("64-true", "64-true", "float64", 8, 8, False),
])
def test_precision_names_their_dtypes(precision, name, dtype, weight_bytes, activation_bytes, mixed):
    settings = trainer_settings({"precision": precision})
    assert settings.precision == name and settings.weight_dtype == dtype
    assert (settings.weight_bytes, settings.activation_bytes, settings.mixed) == (weight_bytes, activation_bytes, mixed)


def test_missing_keys_take_lightnings_defaults():
    assert trainer_settings({}) == trainer_settings(None) == TrainerSettings("32-true", 1, 1, "auto")
    assert not trainer_settings({}).spawns_processes


@pytest.mark.parametrize(("devices", "nodes", "count"), [(1, 1, 1), (4, 1, 4), ("2", 2, 4), ([0, 3], 1, 2),
                                                          ("auto", 1, 1), (-1, 2, 2)])
def test_device_count_multiplies_devices_by_nodes(devices, nodes, count):
    assert trainer_settings({"devices": devices, "num_nodes": nodes}).device_count == count


@pytest.mark.parametrize(("strategy", "sharding", "shards", "stage"), [
    ("auto", "ddp", False, None),
    ("ddp", "ddp", False, None),
    ("ddp_spawn", "ddp", False, None),
    ("fsdp", "zero3", True, None),
    ({"_target_": "lightning.pytorch.strategies.FSDPStrategy", "sharding_strategy": "NO_SHARD"}, "ddp", True, None),
    ("deepspeed", "zero2", True, None),
    ("deepspeed_stage_1", "zero1", True, 1),
    ("deepspeed_stage_3", "zero3", True, 3),
    ({"_target_": "lightning.pytorch.strategies.DeepSpeedStrategy", "stage": 3}, "zero3", True, 3),
])
def test_what_a_distributed_strategy_does(strategy, sharding, shards, stage):
    settings = trainer_settings({"strategy": strategy})
    assert (settings.sharding, settings.shards_the_model, settings.deepspeed_stage) == (sharding, shards, stage)


@pytest.mark.parametrize(("trainer", "spawns"), [
    ({"devices": 1}, False), ({"devices": 2}, True), ({"devices": "auto"}, True), ({"devices": -1}, True),
    ({"num_nodes": 2}, True), ({"strategy": "ddp"}, True), ({"strategy": "fsdp"}, True),
    ({"strategy": "deepspeed_stage_2"}, True), ({"strategy": "auto"}, False),
])
def test_which_settings_start_more_processes(trainer, spawns):
    assert trainer_settings(trainer).spawns_processes is spawns


def test_a_malformed_node_count_is_named_by_validation_not_a_traceback(tiny_model_dir, tiny_csv, tmp_path):
    from ftlab.validate import ConfigError, validate_config
    from tests.helpers import compose, tiny_overrides

    base = tiny_overrides(tiny_model_dir, tiny_csv, tmp_path)
    with pytest.raises(ConfigError) as err:
        validate_config(compose([*base, "trainer.num_nodes=two"]))
    assert str(err.value) == "trainer.num_nodes='two': must be a positive int"
    # Another key under trainer that cannot resolve is not the trainer settings' to report.
    assert trainer_settings({"num_nodes": "two"}).num_nodes == 1
