"""The trainer settings the other stages depend on (precision, devices, nodes, Lightning's distributed strategy),
parsed once from ``cfg.trainer`` into a frozen object. Validation, the cost plan, the frozen-prefix cache and training
ask it questions ("does it shard the model?", "which dtype are the weights?") instead of matching strings of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Lightning's precision names that ftlab accepts; null means Lightning's default, 32-true.
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
DEFAULT_PRECISION = "32-true"
TRAINER_KEYS = ("precision", "devices", "num_nodes", "strategy")  # what TrainerSettings reads of cfg.trainer
ALIASES = {"32": "32-true"}
CUDA_ONLY_PRECISIONS = ("16-mixed", "16-true")  # float16 has no CPU kernels for training
# Weights in 16 bits for *-true half precisions; *-mixed keeps 32-bit weights (and casts them per forward).
# (torch dtype name, bytes per value); torch is not imported here, so validation and --cfg stay light.
WEIGHT_DTYPES = {"bf16-true": ("bfloat16", 2), "16-true": ("float16", 2), "64-true": ("float64", 8)}
FLOAT32 = ("float32", 4)
# Memory layouts of a distributed strategy: what it spreads over the devices (weights, gradients, optimizer state).
SHARDINGS = {"ddp": (False, False, False), "zero1": (False, False, True), "zero2": (False, True, True),
             "zero3": (True, True, True)}


@dataclass(frozen=True)
class TrainerSettings:
    """What a job's ``trainer`` config says about precision and processes. ``strategy`` is ``trainer.strategy`` as
    configured: a name such as ``ddp`` or ``deepspeed_stage_2``, or a strategy config."""

    precision: str = DEFAULT_PRECISION
    devices: Any = 1
    num_nodes: int = 1
    strategy: Any = "auto"

    @property
    def weight_dtype(self) -> str:
        """The name of the torch dtype the weights are held in (``getattr(torch, name)``)."""
        return WEIGHT_DTYPES.get(self.precision, FLOAT32)[0]

    @property
    def weight_bytes(self) -> int:
        """Bytes per weight value."""
        return WEIGHT_DTYPES.get(self.precision, FLOAT32)[1]

    @property
    def activation_bytes(self) -> int:
        """Bytes per activation value: 2 when the forward computes in 16 bits (mixed or true half precision)."""
        return 2 if self.precision.startswith(("16", "bf16")) else self.weight_bytes

    @property
    def mixed(self) -> bool:
        """Whether weights stay in 32 bits and autocast casts them per forward."""
        return self.precision.endswith("-mixed")

    @property
    def device_count(self) -> int:
        """Devices the job spreads over: ``devices`` (a count or a list) times ``num_nodes``; ``auto`` / -1 are
        unknown before the job starts and count as one."""
        if isinstance(self.devices, (list, tuple)):
            count = len(self.devices)
        else:
            count = int(self.devices) if str(self.devices).isdigit() else 1
        return max(count, 1) * self.num_nodes

    @property
    def _strategy_text(self) -> str:
        return str(self.strategy).lower()

    @property
    def deepspeed(self) -> bool:
        return "deepspeed" in self._strategy_text

    @property
    def deepspeed_stage(self) -> int | None:
        """The ZeRO stage of a DeepSpeed strategy (by name ``deepspeed_stage_N`` or a config's ``stage``)."""
        if not self.deepspeed:
            return None
        for stage in (3, 2, 1):
            if f"stage_{stage}" in self._strategy_text or f"'stage': {stage}" in self._strategy_text:
                return stage
        stage = self.strategy.get("stage") if hasattr(self.strategy, "get") else None
        return int(stage) if stage is not None else None

    @property
    def fsdp(self) -> bool:
        return "fsdp" in self._strategy_text

    @property
    def shards_the_model(self) -> bool:
        """FSDP or DeepSpeed: the model or its state is split across processes."""
        return self.fsdp or self.deepspeed

    @property
    def sharding(self) -> str:
        """The memory layout: ``ddp`` (replicated), ``zero1``, ``zero2`` or ``zero3`` (see ``SHARDINGS``)."""
        if self.deepspeed:
            return f"zero{self.deepspeed_stage or 2}"
        if self.fsdp:
            if "no_shard" in self._strategy_text:
                return "ddp"
            return "zero2" if "shard_grad_op" in self._strategy_text else "zero3"
        return "ddp"

    @property
    def spawns_processes(self) -> bool:
        """Whether Lightning will start extra processes (a DDP-like strategy, more than one device or node)."""
        many = (self.devices in (-1, "-1", "auto") or (str(self.devices).isdigit() and int(self.devices) > 1)
                or self.num_nodes > 1)
        return many or self.deepspeed or self.fsdp or "ddp" in self._strategy_text


def trainer_settings(trainer_cfg: Any) -> TrainerSettings:
    """Parse a ``trainer`` config (a DictConfig or a dict; missing keys take Lightning's defaults)."""
    get = trainer_cfg.get if trainer_cfg is not None else (lambda key, default=None: default)
    precision = str(get("precision") or DEFAULT_PRECISION)
    return TrainerSettings(precision=ALIASES.get(precision, precision), devices=get("devices", 1),
                           num_nodes=_count(get("num_nodes")), strategy=get("strategy", "auto"))


def _count(value: Any) -> int:
    """A node count as Lightning takes it; null or a malformed value count as 1 (validation names the latter)."""
    return int(value) if isinstance(value, int) or str(value).isdigit() else 1
