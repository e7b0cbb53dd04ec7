"""The model card (``model/README.md``) of a job: what was trained, on what, how, with which results."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from ftlab.deploy.variants import table, warning
from ftlab.strategies import ADAPTERS
from ftlab.tasks.registry import get_task


def reproduce_command() -> str:
    """``python run.py <the job's overrides>`` when running under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "python run.py  # with the overrides in the job's .hydra/overrides.yaml"
    return " ".join(["python", "run.py", *map(shlex.quote, HydraConfig.get().overrides.task)])


def model_card(cfg: dict[str, Any], metrics: dict[str, Any], command: str) -> str:
    """Markdown card from the resolved config and the final metrics of a job."""
    task = get_task(cfg.get("task", "text_classification"))
    usage_options = "".join(f', {key}="{value}"' for key, value in task.pipeline_kwargs.items())
    strategy = cfg["strategy"]
    sizes = metrics["data/split_sizes"]
    data = cfg["data"]
    scores = "\n".join(f"| {k} | {metrics[k]:.4f} |" for k in sorted(metrics)
                       if k.startswith(("val/", "test/", "before/", "retention/")) and isinstance(metrics[k], float))
    trainer = cfg["trainer"]
    options = ", ".join(f"{k}={v}" for k, v in strategy.items() if k != "name") or "no options"
    labels = task.card_labels(metrics)
    scored = metrics.get("data/test_examples")
    partial = (f"\n`test/` rows were computed on {scored} of the {sizes['test']} test examples "
               "(trainer.limit_test_batches)." if isinstance(scored, int) and scored < sizes["test"] else "")
    notes = partial + (f"\n`retention/` rows: general text that is not the fine-tuning data "
                       f"({metrics.get('retention/source')}), measured on the untuned model and on this one."
                       if "retention/source" in metrics else "")
    adapter = ("\n  The adapter alone (PEFT format) is in `../adapter/`; these weights have it merged in, so plain "
               "`transformers` loads them." if strategy["name"] in ADAPTERS else "")
    return f"""---
library_name: transformers
pipeline_tag: {task.pipeline_tag}
base_model: {cfg['model']['pretrained_model_name_or_path']}
---
# Fine-tuned {task.name.replace('_', ' ')} model (ftlab)

- **Base checkpoint:** `{cfg['model']['pretrained_model_name_or_path']}`
- **Data:** `{data.get('path') or data.get('name')}` ({data['source']}); train / validation / test =
  {sizes['train']} / {sizes['validation']} / {sizes['test']} examples ({task.split_description}, seed {cfg['seed']})
{labels}- **Strategy:** `{strategy['name']}` ({options});
  trainable parameters {metrics['params/trainable']:,} of {metrics['params/total']:,}
  ({100 * metrics['params/trainable_fraction']:.2f}%){adapter}
- **Hyperparameters:** lr {cfg['lr']}, batch size {cfg['batch_size']}, max length {cfg['max_length']},
  optimizer `{cfg['optimizer']['_target_']}` (weight decay {cfg['optimizer'].get('weight_decay')}), scheduler
  `{cfg['scheduler']['name']}`, max epochs {trainer.get('max_epochs')}, max steps {trainer.get('max_steps')},
  precision {trainer.get('precision')}; {metrics['global_step']} optimizer steps in {metrics['train_time_s']:.1f} s
- **Selected by:** best `{cfg['monitor']}` ({cfg['monitor_mode']})

## Results

`before/` rows: the untuned checkpoint on the same test set (when the job ran with eval_before=true).{notes}

| metric | value |
|---|---|
{scores}

{task.card_details(metrics)}

{deploy_section(metrics)}## Use

```python
from transformers import pipeline
model = pipeline("{task.pipeline_tag}", model="<this directory>"{usage_options})
```

## Reproduce

```bash
{command}
```
"""


DEPLOY_HEADING = "## Deployment (ONNX Runtime)"


def deploy_section(metrics: dict[str, Any]) -> str:
    """The card's comparison of PyTorch fp32, ONNX fp32 and ONNX int8 (``onnx.quantize=int8``), or ''."""

    report = metrics.get("deploy")
    if not report:
        return ""
    line = warning(report)
    alert = f"> **{line}**\n\n" if line else ""
    return (f"{DEPLOY_HEADING}\n\n{alert}On the test split ({report['test_examples']} examples); latency of one "
            "forward pass on this machine's CPU, milliseconds. Files: `../onnx/model.onnx`, `../onnx/model.int8.onnx`."
            f"\n\n{table(report)}\n\n")


def with_deploy_section(card: str, metrics: dict[str, Any]) -> str:
    """An existing card with its deployment section added or replaced (before ``## Use``)."""
    start = card.find(DEPLOY_HEADING)
    end = card.find("## Use")
    if end < 0:
        return card.rstrip("\n") + "\n\n" + deploy_section(metrics)
    return card[:start if 0 <= start < end else end] + deploy_section(metrics) + card[end:]


def write_model_card(directory: Path, cfg: dict[str, Any], metrics: dict[str, Any]) -> Path:
    path = Path(directory) / "README.md"
    path.write_text(model_card(cfg, metrics, reproduce_command()))
    return path
