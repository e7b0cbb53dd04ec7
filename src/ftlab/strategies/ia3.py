"""IA3 through PEFT: learned scales on keys, values and feed-forward activations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ftlab.core.checks import Checker
from ftlab.strategies.adapters import Adapter, module_regex, peft_task_type, transposed

if TYPE_CHECKING:
    from torch import nn  # a model is passed in: its caller loaded torch

# IA3 scales keys, values and the input of the feed-forward output layer. PEFT's own per-architecture table covers
# most models; these fill in the architectures it lacks among those ftlab is tested on.
IA3_EXTRA = {"distilbert": (["k_lin", "v_lin", "ffn.lin2"], ["ffn.lin2"]),
             "xlm-roberta": (["key", "value", "output.dense"], ["output.dense"]),
             "electra": (["key", "value", "output.dense"], ["output.dense"]),
             "albert": (["key", "value", "ffn_output"], ["ffn_output"])}


class IA3(Adapter):
    """IA3 (Liu et al. 2022): learned scales on keys, values and the feed-forward activations; the fewest
    parameters of any contender."""

    name = "ia3"
    options = ("feedforward_modules", *Adapter.common)

    @staticmethod
    def defaults(model: nn.Module) -> tuple[list[str], list[str]] | None:
        from peft.utils import (
            TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FEEDFORWARD,
        )
        from peft.utils import (
            TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TARGETS,
        )

        kind = getattr(model.config, "model_type", "")
        if kind in TARGETS:
            return list(TARGETS[kind]), list(FEEDFORWARD[kind])
        return IA3_EXTRA.get(kind)

    def default_targets(self, model: nn.Module) -> list[str]:
        return self.defaults(model)[0]

    def peft_config(self, model: nn.Module, cfg: dict[str, Any]):
        from peft import IA3Config

        feedforward = list(cfg.get("feedforward_modules") or self.defaults(model)[1])
        targets = self.targets(model, cfg)
        regex = module_regex(model, targets, cfg.get("layers"))
        return IA3Config(target_modules=regex, feedforward_modules=module_regex(model, feedforward, cfg.get("layers")),
                         modules_to_save=self.head(model, cfg), task_type=peft_task_type(model),
                         fan_in_fan_out=transposed(model, regex))

    def label(self, cfg: dict[str, Any]) -> str:
        return f"ia3(layers={cfg['layers']})" if cfg.get("layers") else "ia3"

    def check_targets(self, c: Checker, model: nn.Module, available: list[str]) -> None:
        super().check_targets(c, model, available)
        given = c.get("strategy.target_modules") is not None
        if self.defaults(model) is None and not (given and c.get("strategy.feedforward_modules") is not None):
            c.fail("strategy.target_modules", f"no IA3 default for model type {model.config.model_type!r}: set "
                                              "strategy.target_modules (keys, values, feed-forward output) and "
                                              f"strategy.feedforward_modules; valid: {', '.join(available)}")
            return
        feedforward = c.get("strategy.feedforward_modules")
        if feedforward is None:
            return
        targets = list(c.get("strategy.target_modules") or self.defaults(model)[0])
        for name in feedforward:
            if name not in targets:
                c.fail("strategy.feedforward_modules", f"{name!r} is not one of the target modules; valid: "
                                                       f"{', '.join(targets)}")
