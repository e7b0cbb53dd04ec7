"""LoRA through PEFT, with DoRA (``use_dora``) and QLoRA (``quantize=4bit``) as options."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ftlab.core.checks import Checker
from ftlab.core.extras import extra_problem
from ftlab.strategies.adapters import Adapter, block_linears, module_regex, peft_task_type, transposed

if TYPE_CHECKING:
    from torch import nn  # a model is passed in: its caller loaded torch


class LoRA(Adapter):
    """LoRA (Hu et al. 2021): a rank-r update B·A beside each adapted linear layer; with ``use_dora``, DoRA
    (Liu et al. 2024) also learns each output's magnitude."""

    name = "lora"
    options = ("r", "alpha", "dropout", "use_dora", "quantize", *Adapter.common)
    QUANTIZE = (None, "4bit")

    def load_kwargs(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """QLoRA (Dettmers et al. 2023): the frozen base in 4-bit NF4 through bitsandbytes, on this rank's GPU."""
        if cfg.get("quantize") != "4bit":
            return {}
        import os

        import torch
        from transformers import BitsAndBytesConfig

        return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                          bnb_4bit_use_double_quant=True,
                                                          bnb_4bit_compute_dtype=torch.bfloat16),
                "device_map": {"": int(os.environ.get("LOCAL_RANK", 0))}}

    def prepare(self, model: nn.Module, cfg: dict[str, Any]) -> nn.Module:
        if cfg.get("quantize") == "4bit":
            from peft import prepare_model_for_kbit_training

            # ftlab's model.gradient_checkpointing (non-reentrant) decides checkpointing, not PEFT's default.
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return super().prepare(model, cfg)

    def default_targets(self, model: nn.Module) -> list[str]:
        return sorted({name for block in block_linears(model)[1] for name in block})  # every linear layer

    def peft_config(self, model: nn.Module, cfg: dict[str, Any]):
        from peft import LoraConfig

        regex = module_regex(model, self.targets(model, cfg), cfg.get("layers"))
        return LoraConfig(r=int(cfg.get("r", 8)), lora_alpha=float(cfg.get("alpha", 16)),
                          lora_dropout=float(cfg.get("dropout", 0.0)), use_dora=bool(cfg.get("use_dora", False)),
                          target_modules=regex, modules_to_save=self.head(model, cfg),
                          task_type=peft_task_type(model), fan_in_fan_out=transposed(model, regex))

    def label(self, cfg: dict[str, Any]) -> str:
        layers = f",layers={cfg['layers']}" if cfg.get("layers") else ""
        kind = "dora" if cfg.get("use_dora") else "qlora" if cfg.get("quantize") else "lora"
        return f"{kind}(r={cfg.get('r', 8)}{layers})"

    def check(self, c: Checker, model: nn.Module | None, blocks: int | None) -> None:
        c.positive("strategy.r", int)
        c.positive("strategy.alpha")
        c.fraction("strategy.dropout")
        c.flag("strategy.use_dora")
        if c.choice("strategy.quantize", self.QUANTIZE) and c.get("strategy.quantize") == "4bit":
            import torch

            if not torch.cuda.is_available() or c.get("trainer.accelerator") == "cpu":
                c.fail("strategy.quantize", "QLoRA's 4-bit base (bitsandbytes) needs a CUDA GPU, and none is used "
                                            "here; valid: null (LoRA on the full-precision base)")
            elif problem := extra_problem("qlora"):
                c.fail("strategy.quantize", problem)
        super().check(c, model, blocks)
