"""Text classification: the task (data checks, tokenised splits, metrics, model card, predictions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassAveragePrecision,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassPrecisionRecallCurve,
    MulticlassRecall,
    MulticlassROC,
)

from ftlab.tasks.base import Task, swap_forward
from ftlab.tasks.labelled_splits import clean_and_split
from ftlab.tasks.labelled_texts import source_chunks
from ftlab.tasks.readers import sample_limit
from ftlab.tasks.specs import TextClassificationSpec


def _confusion_table(confusion: dict[str, Any]) -> str:
    labels = confusion["labels"]
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(str(v) for v in row) + " |"
              for label, row in zip(labels, confusion["matrix"])]
    return "\n".join(lines)


CURVE_THRESHOLDS = 200


class TextClassification(TextClassificationSpec, Task):
    """One label per text: sequence classification head, accuracy and macro F1 / precision / recall."""

    def prepare(self, cfg: dict[str, Any], tokenizer, max_length: int, seed: int, work_dir: Path | None = None):
        """Labels become class ids of the sorted label names. With ``work_dir`` the source is streamed through Arrow
        files there and tokenised batch by batch, so memory holds a batch, not the data set."""
        import datasets

        splits, names = clean_and_split(source_chunks(cfg), cfg["val_size"], cfg["test_size"], seed, work_dir)
        index = {name: i for i, name in enumerate(names)}
        built, label_ids = {}, {}
        for split, (texts, labels) in splits.items():
            n = min(sample_limit(cfg, split) or len(labels), len(labels))
            texts = texts if isinstance(texts, datasets.Dataset) else datasets.Dataset.from_dict({"text": texts})
            built[split] = texts.select(range(n)) if n < len(texts) else texts
            label_ids[split] = [index[label] for label in labels[:n]]

        def tokenize(batch: dict[str, list], rows: list[int], split: str) -> dict[str, list]:
            return {**tokenizer(batch["text"], truncation=True, max_length=max_length),
                    "labels": [label_ids[split][i] for i in rows]}

        label_type = datasets.ClassLabel(names=names)  # an empty split has no columns to cast (its size is an error)
        dsd = {}
        for split, ds in built.items():
            ds = ds.map(tokenize, batched=True, with_indices=True, remove_columns=["text"], fn_kwargs={"split": split},
                        desc=f"tokenizing {split}")
            dsd[split] = ds.cast_column("labels", label_type) if len(ds) else ds
        return datasets.DatasetDict(dsd), names

    def collator(self, tokenizer):
        """Dynamic padding to the longest text of the batch."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def metrics(self, label_names: list[str], prefix: str) -> MetricCollection:
        """Accuracy (micro) and macro F1 / precision / recall under ``<prefix>/<name>``; on the test set also the
        confusion matrix and, one-vs-rest per class, ROC and precision-recall curves with AUROC and average
        precision (binned at ``CURVE_THRESHOLDS`` thresholds: constant memory, exact across processes)."""
        num_classes = len(label_names)
        metrics = {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
        }
        if prefix == "test":
            bins = {"thresholds": CURVE_THRESHOLDS}
            metrics.update(confusion=MulticlassConfusionMatrix(num_classes),
                           auroc_per_class=MulticlassAUROC(num_classes, average=None, **bins),
                           ap_per_class=MulticlassAveragePrecision(num_classes, average=None, **bins),
                           roc=MulticlassROC(num_classes, **bins),
                           pr=MulticlassPrecisionRecallCurve(num_classes, **bins))
        return MetricCollection(metrics, prefix=f"{prefix}/")

    def metric_inputs(self, logits):
        return logits.softmax(dim=-1)  # the curves need scores; the other metrics take their argmax

    def test_details(self, metrics, values, label_names):
        """The confusion matrix, AUROC and average precision per class (their macro means stay logged as
        ``test/auroc`` and ``test/average_precision``) and the curves themselves (written to ``test_curves.json``)."""
        names = list(label_names)
        matrix = values.pop("test/confusion")
        auroc, ap = values.pop("test/auroc_per_class"), values.pop("test/ap_per_class")
        values["test/auroc"], values["test/average_precision"] = auroc.mean(), ap.mean()
        fpr, tpr, _ = values.pop("test/roc")
        precision, recall, _ = values.pop("test/pr")
        return {"confusion_matrix": {"labels": names, "matrix": matrix.tolist()},
                "auroc_per_class": dict(zip(names, auroc.tolist())),
                "average_precision_per_class": dict(zip(names, ap.tolist())),
                "curves": {"roc": {n: {"fpr": fpr[i].tolist(), "tpr": tpr[i].tolist()} for i, n in enumerate(names)},
                           "pr": {n: {"recall": recall[i].tolist(), "precision": precision[i].tolist()}
                                  for i, n in enumerate(names)}}}

    def card_labels(self, metrics: dict[str, Any]) -> str:
        return f"- **Labels:** {', '.join(metrics['test/confusion_matrix']['labels'])}\n"

    def card_details(self, metrics: dict[str, Any]) -> str:
        return "Test confusion matrix:\n\n" + _confusion_table(metrics["test/confusion_matrix"])

    def predictor(self, path, *, max_length, max_new_tokens, forward=None):
        """``{"label", "score", "probs"}`` per text, label names from the model's config."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=False).eval()
        if forward is not None:
            swap_forward(model, forward)
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]

        def run(texts: list[str]) -> list[dict]:
            batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            with torch.inference_mode():
                probs = model(**batch).logits.softmax(-1)
            out = []
            for row in probs.tolist():
                best = max(range(len(row)), key=row.__getitem__)
                out.append({"label": names[best], "score": row[best], "probs": dict(zip(names, row))})
            return out
        return run
