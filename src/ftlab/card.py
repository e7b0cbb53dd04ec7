"""The model card (``model/README.md``) of a job: what was trained, on what, how, with which results."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from ftlab.tasks import get_task


def reproduce_command() -> str:
    """``python run.py <the job's overrides>`` when running under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "python run.py  # with the overrides in the job's .hydra/overrides.yaml"
    return " ".join(["python", "run.py", *map(shlex.quote, HydraConfig.get().overrides.task)])


def _confusion_table(confusion: dict[str, Any]) -> str:
    labels = confusion["labels"]
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(str(v) for v in row) + " |"
              for label, row in zip(labels, confusion["matrix"])]
    return "\n".join(lines)


def _entity_table(scores: dict[str, dict[str, float]]) -> str:
    lines = ["| entity type | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    lines += [f"| {kind} | {s['precision']:.4f} | {s['recall']:.4f} | {s['f1']:.4f} | {s['support']} |"
              for kind, s in scores.items()]
    return "\n".join(lines)


def _details(metrics: dict[str, Any]) -> str:
    """The task's breakdown of the test results."""
    if "test/confusion_matrix" in metrics:
        return "Test confusion matrix:\n\n" + _confusion_table(metrics["test/confusion_matrix"])
    if "test/entity_scores" in metrics:
        return "Test entity scores per type (exact span and type match):\n\n" + _entity_table(
            metrics["test/entity_scores"])
    return ""


SPLITS = {"text_classification": "deduplicated, seeded stratified split",
          "token_classification": "sentences, deduplicated, seeded split",
          "causal_lm": "whole documents split (seeded) before packing; sizes in max_length blocks"}


def model_card(cfg: dict[str, Any], metrics: dict[str, Any], command: str) -> str:
    """Markdown card from the resolved config and the final metrics of a job."""
    task = get_task(cfg.get("task", "text_classification"))
    usage_options = "".join(f', {key}="{value}"' for key, value in task.pipeline_kwargs)
    strategy = cfg["strategy"]
    sizes = metrics["data/split_sizes"]
    data = cfg["data"]
    scores = "\n".join(f"| {k} | {metrics[k]:.4f} |" for k in sorted(metrics)
                       if k.startswith(("val/", "test/", "before/")) and isinstance(metrics[k], float))
    trainer = cfg["trainer"]
    labels = ""
    if "test/confusion_matrix" in metrics:
        labels = f"- **Labels:** {', '.join(metrics['test/confusion_matrix']['labels'])}\n"
    elif "test/entity_scores" in metrics:
        labels = f"- **Entity types:** {', '.join(metrics['test/entity_scores'])}\n"
    return f"""---
library_name: transformers
pipeline_tag: {task.pipeline_tag}
base_model: {cfg['model']['pretrained_model_name_or_path']}
---
# Fine-tuned {task.name.replace('_', ' ')} model (ftlab)

- **Base checkpoint:** `{cfg['model']['pretrained_model_name_or_path']}`
- **Data:** `{data.get('path') or data.get('name')}` ({data['source']}); train / validation / test =
  {sizes['train']} / {sizes['validation']} / {sizes['test']} examples ({SPLITS[task.name]}, seed {cfg['seed']})
{labels}- **Strategy:** `{strategy['name']}` ({', '.join(f'{k}={v}' for k, v in strategy.items() if k != 'name') or 'no options'});
  trainable parameters {metrics['params/trainable']:,} of {metrics['params/total']:,}
  ({100 * metrics['params/trainable_fraction']:.2f}%)
- **Hyperparameters:** lr {cfg['lr']}, batch size {cfg['batch_size']}, max length {cfg['max_length']},
  optimizer `{cfg['optimizer']['_target_']}` (weight decay {cfg['optimizer'].get('weight_decay')}), scheduler
  `{cfg['scheduler']['name']}`, max epochs {trainer.get('max_epochs')}, max steps {trainer.get('max_steps')},
  precision {trainer.get('precision')}; {metrics['global_step']} optimizer steps in {metrics['train_time_s']:.1f} s
- **Selected by:** best `{cfg['monitor']}` ({cfg['monitor_mode']})

## Results

`before/` rows: the untuned checkpoint on the same test set (when the job ran with eval_before=true).

| metric | value |
|---|---|
{scores}

{_details(metrics)}

## Use

```python
from transformers import pipeline
model = pipeline("{task.pipeline_tag}", model="<this directory>"{usage_options})
```

## Reproduce

```bash
{command}
```
"""


def write_model_card(directory: Path, cfg: dict[str, Any], metrics: dict[str, Any]) -> Path:
    path = Path(directory) / "README.md"
    path.write_text(model_card(cfg, metrics, reproduce_command()))
    return path
