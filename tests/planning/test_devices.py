"""The cost plan of models that do not fit here: from config.json alone, per device under DDP / ZeRO / FSDP, and the
fits table; the arithmetic pinned against numbers derived by hand."""

from __future__ import annotations

import json

import pytest

from ftlab.core.checks import ConfigError
from ftlab.core.trainer_settings import trainer_settings
from ftlab.model.architecture import meta_model
from ftlab.planning.devices import per_device
from ftlab.train import train
from tests.helpers import ROOT, compose

V, H, I, LAYERS, HEADS, KV = 100, 16, 32, 4, 4, 2  # a tiny LLaMA: vocab, hidden, intermediate, blocks, heads


@pytest.fixture(scope="module")
def llama_config_dir(tmp_path_factory):
    """A checkpoint directory with config.json only (no weights, no tokenizer)."""
    from transformers import LlamaConfig

    path = tmp_path_factory.mktemp("llama-config")
    LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                num_key_value_heads=KV, tie_word_embeddings=False).save_pretrained(path)
    return path


def plan_overrides(model_dir, tmp_path, *extra):
    return ["experiment=plan_large", f"model.pretrained_model_name_or_path={model_dir}", f"output_dir={tmp_path}",
            "logger=none", "batch_size=2", "max_length=8", "model.gradient_checkpointing=false", *extra]


def test_plan_from_config_alone_matches_the_arithmetic_by_hand(llama_config_dir, tmp_path):
    # trainer.devices=4 on a machine with 2 cores: a plan describes the target machine, not this one
    result = train(compose(plan_overrides(llama_config_dir, tmp_path, "trainer.devices=4", "trainer.precision=32-true",
                                          "strategy=full", "device_memory=2GiB")))
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan == json.loads(json.dumps(result["plan"]))
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.json").exists()
    block = H * H + 2 * H * (H // HEADS * KV) + H * H + 3 * H * I + 2 * H  # q, k, v (grouped), o; MLP; two norms
    total = V * H + LAYERS * block + H + V * H  # embeddings, blocks, final norm, untied LM head
    assert plan["params"]["total"] == total == 12560
    assert plan["largest_unit_params"] == V * H + H + V * H  # outside the blocks: 3216 > a block's 2336
    activations = LAYERS * int(8 * 2 * H * (34 + 5 * HEADS * 8 / H) * 2)  # s*b*h*(34 + 5as/h), fp32 = x2
    devices = plan["devices"]
    assert devices["devices"] == 4 and devices["layout"] == "zero3"  # conf/trainer/fsdp.yaml: FULL_SHARD
    assert devices["per_device_bytes"] == {
        "weights": 4 * total // 4, "gradients": 4 * total // 4, "optimizer_state": 2 * 4 * total // 4,
        "gathered_units": 2 * 3216 * 4, "autocast_copies": 0, "activations": activations,
        "overhead": 2**30, "total": 4 * total // 4 * 4 + 2 * 3216 * 4 + activations + 2**30}  # 1 GiB for CUDA
    assert devices["per_device_bytes"]["total"] == 1_073_907_904  # 50,240 + 25,728 + 90,112 + 2**30, by hand
    assert devices["fits"] and devices["device_memory_bytes"] == 2_147_483_648  # 2GiB: 1 GiB overhead + 0.1 MiB
    ddp = per_device(plan, 4, "ddp", mixed=False)
    assert (ddp["weights"], ddp["gradients"], ddp["optimizer_state"]) == (4 * total, 4 * total, 8 * total)
    zero2 = per_device(plan, 4, "zero2", mixed=False)
    assert (zero2["weights"], zero2["gradients"], zero2["optimizer_state"]) == (4 * total, total, 2 * total)
    rows = {r["strategy"]: r for r in devices["table"]}
    assert list(rows) == ["full", "partial(k=1)", "lora(r=8)"]  # partial over a quarter of 4 blocks is k=1
    # partial(k=1): the top block and the head (final norm + LM head) train
    assert rows["partial(k=1)"]["trainable_pct"] == pytest.approx(100 * (block + H + V * H) / total)


def test_half_precision_and_mixed_precision_bytes(llama_config_dir, tmp_path):
    true_half = train(compose(plan_overrides(llama_config_dir, tmp_path / "a", "trainer.precision=bf16-true",
                                             "trainer.devices=2", "trainer.strategy=ddp")))["plan"]
    total = true_half["params"]["total"]
    assert true_half["params"]["element_bytes"] == 2 and true_half["devices"]["layout"] == "ddp"
    assert true_half["devices"]["per_device_bytes"]["weights"] == 2 * total  # weights, grads, Adam states in bf16
    assert true_half["devices"]["per_device_bytes"]["optimizer_state"] == 4 * total
    mixed = train(compose(plan_overrides(llama_config_dir, tmp_path / "b", "trainer.precision=bf16-mixed",
                                         "trainer.devices=2", "trainer.strategy=deepspeed_stage_2")))["plan"]
    per = mixed["devices"]["per_device_bytes"]
    assert mixed["devices"]["layout"] == "zero2"
    assert (per["weights"], per["gradients"], per["optimizer_state"]) == (4 * total, 2 * total, 4 * total)
    assert per["autocast_copies"] == 2 * total  # a 16-bit copy of every weight during the forward


def test_public_configs_plan_at_their_published_sizes(tmp_path):
    expected = {"llama-2-7b": 6_738_415_616, "llama-2-70b": 68_976_648_192, "mistral-7b-v0.1": 7_241_732_096,
                "llama-3-8b": 8_030_261_248, "llama-3-70b": 70_553_706_496}
    for name, params in expected.items():
        model = meta_model({"pretrained_model_name_or_path": str(ROOT / "examples" / "model_configs" / name)},
                           task="causal_lm")
        assert sum(p.numel() for p in model.parameters()) == params, name
    # LLaMA-3 70B on 8 x 80 GiB with FSDP (experiment=plan_large): full fine-tuning does not fit, LoRA does
    overrides = plan_overrides(ROOT / "examples" / "model_configs" / "llama-3-70b", tmp_path,
                               "model.gradient_checkpointing=true", "max_length=4096", "batch_size=1")
    plan = train(compose(overrides))["plan"]
    rows = {r["strategy"]: r for r in plan["devices"]["table"]}
    assert not rows["full"]["zero3"]["fits"] and rows["lora(r=8)"]["zero3"]["fits"]
    assert not rows["lora(r=8)"]["ddp"]["fits"]  # a 70B replica alone is 263 GiB in 32 bits


def sharding_of(strategy) -> str:
    return trainer_settings({"strategy": strategy}).sharding


def test_layouts_of_trainer_strategies():
    assert sharding_of("ddp") == sharding_of("auto") == "ddp"
    assert sharding_of("deepspeed_stage_1") == "zero1" and sharding_of("deepspeed_stage_3") == "zero3"
    assert sharding_of({"_target_": "lightning.pytorch.strategies.FSDPStrategy"}) == "zero3"
    assert sharding_of({"_target_": "lightning.pytorch.strategies.FSDPStrategy",
                        "sharding_strategy": "SHARD_GRAD_OP"}) == "zero2"


def test_a_config_alone_does_not_train_and_a_bad_device_memory_is_named(llama_config_dir, tmp_path):
    overrides = plan_overrides(llama_config_dir, tmp_path, "plan_only=false", "trainer=cpu")
    with pytest.raises(ConfigError, match=r"no weights; .*plan_only=true plans from config.json alone"):
        train(compose(overrides))
    with pytest.raises(ConfigError, match="device_memory.*not a memory size"):
        train(compose(plan_overrides(llama_config_dir, tmp_path, "device_memory=lots")))
    assert not (tmp_path / "plan.json").exists()
