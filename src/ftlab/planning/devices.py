"""Memory per device of a plan under a distributed strategy, and whether it fits: ``plan_only``'s fits table.

A plan (``ftlab.planning.cost.build_plan``) holds the bytes of one whole model replica. Spread over ``N`` devices:

- DDP keeps everything on every device;
- ZeRO-1 shards the optimizer state; ZeRO-2 (and FSDP ``SHARD_GRAD_OP``) also the gradients;
- FSDP ``FULL_SHARD`` (Lightning's default) and ZeRO-3 also the weights, and gather one unit's full weights at a
  time, prefetching the next: two units (the largest one, to be safe) are counted on top.

Activations belong to each device's own batch (``batch_size`` is per device in Lightning) and are not sharded.
``*-mixed`` precision keeps the weights in 32 bits and casts each one to 16 bits for the forward; autocast keeps those
copies until the forward ends, so 2 bytes per weight held on the device are counted too. A fixed 1 GiB is added for
the CUDA context and allocator slack. These are estimates; ``benchmarks/plan_memory.py`` measures their error.
"""

from __future__ import annotations

from typing import Any

from ftlab.core.checks import memory_mib
from ftlab.core.trainer_settings import SHARDINGS, trainer_settings
from ftlab.planning.cost import job_plan, planned_model
from ftlab.strategies import StrategyError, strategy_label

GiB = 2**30
OVERHEAD_BYTES = 1 * GiB  # CUDA context, kernels, allocator slack
LABELS = {"ddp": "DDP", "zero1": "ZeRO-1", "zero2": "ZeRO-2", "zero3": "FSDP/ZeRO-3"}


def per_device(plan: dict[str, Any], devices: int, sharding: str, mixed: bool) -> dict[str, int]:
    """Bytes on each device: weights, gradients, optimizer state, gathered units, autocast copies, activations,
    overhead, and their total."""
    memory = plan["memory_bytes"]
    shard_weights, shard_grads, shard_optimizer = SHARDINGS[sharding]

    def spread(value: int, sharded: bool) -> int:
        return -(-value // devices) if sharded else value

    out = {"weights": spread(memory["weights"], shard_weights),
           "gradients": spread(memory["gradients"], shard_grads),
           "optimizer_state": spread(memory["optimizer_state"], shard_optimizer)}
    gathers = shard_weights and devices > 1
    # FSDP gathers a unit in the compute precision (16 bits under *-mixed); autocast copies only unsharded weights.
    unit_bytes = plan["largest_unit_params"] * (2 if mixed else plan["params"]["element_bytes"])
    out["gathered_units"] = 2 * unit_bytes if gathers else 0
    out["autocast_copies"] = 2 * plan["params"]["total"] if mixed and not gathers else 0
    out["activations"] = memory["activations_estimate"]
    out["overhead"] = OVERHEAD_BYTES
    out["total"] = sum(out.values())
    return out


def fits_table(plans: dict[str, dict[str, Any]], devices: int, device_bytes: int, mixed: bool) -> list[dict]:
    """For each strategy label and each layout: GiB per device and whether it fits in ``device_bytes``."""
    rows = []
    for label, plan in plans.items():
        row: dict[str, Any] = {"strategy": label, "trainable_pct": 100 * plan["params"]["trainable_fraction"]}
        for sharding in SHARDINGS:
            total = per_device(plan, devices, sharding, mixed)["total"]
            row[sharding] = {"gib": total / GiB, "fits": total <= device_bytes}
        rows.append(row)
    return rows


def format_fits(rows: list[dict], devices: int, device_bytes: int) -> str:
    """The console table: GiB per device under each layout, ``fits`` or ``NO``."""
    head = f"{'strategy':<22}{'trainable':>10}" + "".join(f"{LABELS[s]:>16}" for s in SHARDINGS)
    lines = [f"fits on {devices} x {device_bytes / GiB:g} GiB? (GiB per device)", head]
    for row in rows:
        cells = "".join(f"{row[s]['gib']:>9.1f} {'fits' if row[s]['fits'] else 'NO':>6}" for s in SHARDINGS)
        lines.append(f"{row['strategy']:<22}{row['trainable_pct']:>9.2f}%{cells}")
    return "\n".join(lines)


# Strategies every fits table compares (the code's defaults: partial trains the top block, LoRA r=8 on every block),
# beside the configured one and partial over the top quarter of the blocks.
CONTENDERS = ({"name": "full"}, {"name": "partial"}, {"name": "lora"})


def device_section(cfg, plan: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``plan.json``'s ``devices`` entry for the configured strategy, devices and ``trainer.strategy``, and the
    fits table of the contenders under every layout, with its console text."""
    from omegaconf import OmegaConf


    settings = trainer_settings(OmegaConf.to_container(cfg.trainer, resolve=True))
    devices, sharding = settings.device_count, settings.sharding
    device_bytes = int(memory_mib(str(cfg.device_memory)) * 2**20)
    blocks = sum(name.startswith("block.") for name in plan["params"]["by_group"])
    strategy = OmegaConf.to_container(cfg.strategy, resolve=True)
    contenders = [strategy, *CONTENDERS, {"name": "partial", "trainable_layers": max(1, blocks // 4)}]
    plans = {strategy_label(strategy): plan}
    for spec in contenders:
        label = strategy_label(spec)
        if label in plans:
            continue
        try:
            model, selection = planned_model(OmegaConf.to_container(cfg.model, resolve=True), cfg.task, spec,
                                             settings)
        except StrategyError:  # e.g. partial on a model whose blocks cannot be found
            continue
        plans[label] = job_plan(cfg, model, selection)
    rows = fits_table(plans, devices, device_bytes, settings.mixed)
    mine = per_device(plan, devices, sharding, settings.mixed)
    section = {"devices": devices, "layout": sharding, "device_memory_bytes": device_bytes,
               "per_device_bytes": mine, "fits": mine["total"] <= device_bytes, "table": rows}
    text = (f"per device ({devices} device(s), {LABELS[sharding]}, {settings.precision}): "
            + ", ".join(f"{k} {v / GiB:.2f} GiB" for k, v in mine.items())
            + f" -> {'fits' if section['fits'] else 'does NOT fit'} in {device_bytes / GiB:g} GiB\n"
            + format_fits(rows, devices, device_bytes))
    return section, text
