"""Token classification (NER): CoNLL / JSON reading, sub-word label alignment, entity-level metrics.

Labels are word-level BIO tags. Only the first sub-token of a word carries the word's label; the other
sub-tokens and the special tokens get -100 (ignored by the loss and the metrics). Entity precision, recall and F1
follow seqeval's default (non-strict) conventions: an ``I-`` tag after ``O`` or after another type starts an entity,
and an entity counts as correct only when its type, start and end all match.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from ftlab.core.assets import resolve_path
from ftlab.core.checks import DataError
from ftlab.tasks.base import Task
from ftlab.tasks.readers import IGNORE_INDEX, SPLIT_PATHS, sample_limit, split_items
from ftlab.tasks.specs import TokenClassificationSpec
from ftlab.tasks.tables import read_table
from ftlab.tasks.utf8 import read_text

Sentences = tuple[list[list[str]], list[list[str]]]  # (tokens per sentence, tags per sentence)


def read_conll(path: str, errors: str = "strict") -> Sentences:
    """Whitespace- or tab-separated ``token ... tag`` lines, a blank line between sentences; ``-DOCSTART-`` skipped."""
    sentences, tags, tokens, labels = [], [], [], []
    for lineno, line in enumerate([*read_text(path, errors).splitlines(), ""], start=1):
        fields = line.split()
        if fields and fields[0] != "-DOCSTART-":
            if len(fields) < 2 or not is_bio(fields[-1]):
                raise DataError(f"{path}:{lineno}: {line.strip()!r} is not '<token> ... <tag>' with a BIO tag "
                                "(O, B-<type>, I-<type>)")
            tokens.append(fields[0])
            labels.append(fields[-1])
        elif tokens:
            sentences.append(tokens)
            tags.append(labels)
            tokens, labels = [], []
    return sentences, tags


def is_bio(tag: str) -> bool:
    return tag == "O" or (tag[:2] in ("B-", "I-") and len(tag) > 2)


def read_tagged_table(path: str, tokens_column: str, tags_column: str, errors: str = "strict") -> Sentences:
    """A json / jsonl file with a list of tokens and a list of tags per row."""
    frame = read_table(path, errors, reads=(tokens_column, tags_column))
    for row, (tokens, tags) in enumerate(zip(frame[tokens_column], frame[tags_column]), start=1):
        if not (isinstance(tokens, list) and isinstance(tags, list) and len(tokens) == len(tags)):
            raise DataError(f"{path}: row {row}: {tokens_column} and {tags_column} must be lists of equal length")
        bad = [str(t) for t in tags if not is_bio(str(t))]
        if bad:
            raise DataError(f"{path}: row {row}: tag {bad[0]!r} is not BIO; valid: O, B-<type>, I-<type>")
    return [list(map(str, t)) for t in frame[tokens_column]], [list(map(str, t)) for t in frame[tags_column]]


def load_sentences(cfg: dict[str, Any]) -> dict[str, Sentences]:
    """Sentences per split given by the source (``conll`` or ``files``)."""
    out = {}
    for split, key in SPLIT_PATHS:
        if not cfg.get(key):
            continue
        path = resolve_path(cfg[key])
        if cfg["source"] == "conll" or Path(path).suffix.lower() in (".txt", ".conll", ".bio", ".tsv"):
            out[split] = read_conll(path, cfg.get("encoding_errors", "strict"))
        else:
            out[split] = read_tagged_table(path, cfg.get("tokens_column", "tokens"), cfg.get("tags_column", "tags"),
                                           cfg.get("encoding_errors", "strict"))
    return out


def split_sentences(raw: dict[str, Sentences], val_size: float, test_size: float, seed: int) -> dict[str, Sentences]:
    """Deduplicate (by their words) and split the training sentences into the splits the source does not provide."""
    pairs = {split: list(zip(*sentences)) for split, sentences in raw.items()}
    splits = split_items(pairs, lambda pair: " ".join(pair[0]), val_size, test_size, seed)
    return {split: ([tokens for tokens, _ in part], [tags for _, tags in part]) for split, part in splits.items()}


def tag_names(all_tags) -> list[str]:
    """``O`` first, then per entity type (alphabetical) its ``B-`` and ``I-`` tags."""
    seen = {tag for tags in all_tags for tag in tags}
    types = sorted({tag[2:] for tag in seen if tag[:2] in ("B-", "I-")})
    extra = sorted(tag for tag in seen if tag != "O" and tag[:2] not in ("B-", "I-"))
    if extra:
        raise DataError(f"tags must be BIO (O, B-<type>, I-<type>); found {', '.join(extra[:5])}")
    return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]


def align_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """Label the first sub-token of each word with the word's label; other sub-tokens and specials get -100."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORE_INDEX if word is None or word == previous else word_labels[word])
        previous = word
    return labels


def tokenize_and_align(tokenizer, tokens: list[list[str]], tags: list[list[str]], label2id: dict[str, int],
                       max_length: int) -> dict[str, list]:
    """Tokenise pre-split words (a fast tokenizer gives ``word_ids``) and align their labels."""
    enc = tokenizer(tokens, is_split_into_words=True, truncation=True, max_length=max_length)
    enc["labels"] = [align_labels(enc.word_ids(i), [label2id[t] for t in sentence_tags])
                     for i, sentence_tags in enumerate(tags)]
    return dict(enc)


def entities(tags: list[str]) -> set[tuple[str, int, int]]:
    """``(type, start, end)`` spans (end exclusive) in a BIO tag sequence, seqeval's default rules."""
    spans, start, current = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, kind = (tag[0], tag[2:]) if tag != "O" else ("O", None)
        ends = current is not None and (prefix in ("B", "O") or kind != current)
        if ends:
            spans.add((current, start, i))
            current = None
        if prefix == "B" or (prefix == "I" and current is None):
            start, current = i, kind
    return spans


class EntityScores(Metric):
    """Entity-level micro precision / recall / F1 over exact (type, start, end) matches, summed across ranks."""

    full_state_update = False

    def __init__(self, tag_names: list[str], **kwargs):
        super().__init__(**kwargs)
        self.tag_names = list(tag_names)
        self.types = sorted({t[2:] for t in tag_names if t != "O"})
        for state in ("correct", "predicted", "gold"):
            self.add_state(state, torch.zeros(len(self.types), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """``preds`` and ``target``: tag ids (batch, tokens); positions where ``target`` is -100 are skipped."""
        index = {t: i for i, t in enumerate(self.types)}
        for pred_row, gold_row in zip(preds.tolist(), target.tolist()):
            keep = [(p, g) for p, g in zip(pred_row, gold_row) if g != IGNORE_INDEX]
            pred = entities([self.tag_names[p] for p, _ in keep])
            gold = entities([self.tag_names[g] for _, g in keep])
            for state, spans in (("correct", pred & gold), ("predicted", pred), ("gold", gold)):
                counts = getattr(self, state)
                for kind, _, _ in spans:
                    counts[index[kind]] += 1

    def compute(self) -> dict[str, torch.Tensor]:
        return _scores(self.correct.sum(), self.predicted.sum(), self.gold.sum())

    def per_type(self) -> dict[str, dict[str, float]]:
        """Precision / recall / F1 / support per entity type (for the model card), summed across ranks."""
        with self.sync_context():
            return {kind: {**{k: float(v) for k, v in _scores(c, p, g).items()}, "support": int(g)}
                    for kind, c, p, g in zip(self.types, self.correct, self.predicted, self.gold)}


def _scores(correct: torch.Tensor, predicted: torch.Tensor, gold: torch.Tensor) -> dict[str, torch.Tensor]:
    precision = correct / predicted if predicted > 0 else torch.tensor(0.0)
    recall = correct / gold if gold > 0 else torch.tensor(0.0)
    total = precision + recall
    f1 = 2 * precision * recall / total if total > 0 else torch.tensor(0.0)
    return {"precision": precision.float(), "recall": recall.float(), "f1": f1.float()}


def _entity_table(scores: dict[str, dict[str, float]]) -> str:
    lines = ["| entity type | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    lines += [f"| {kind} | {s['precision']:.4f} | {s['recall']:.4f} | {s['f1']:.4f} | {s['support']} |"
              for kind, s in scores.items()]
    return "\n".join(lines)


class TokenClassification(TokenClassificationSpec, Task):
    """NER: a BIO tag per word, token classification head, entity-level precision / recall / F1."""

    def prepare(self, cfg: dict[str, Any], tokenizer, max_length: int, seed: int, work_dir=None):
        """Sub-word labels aligned to each word's first sub-token; the tag names."""
        import datasets

        splits = split_sentences(load_sentences(cfg), cfg["val_size"], cfg["test_size"], seed)
        names = tag_names(tags for _, all_tags in splits.values() for tags in all_tags)
        label2id = {name: i for i, name in enumerate(names)}
        built = {}
        for split, (tokens, tags) in splits.items():
            n = sample_limit(cfg, split) or len(tokens)
            built[split] = datasets.Dataset.from_dict(
                tokenize_and_align(tokenizer, tokens[:n], tags[:n], label2id, max_length))
        return datasets.DatasetDict(built), names

    def collator(self, tokenizer):
        """Dynamic padding; padded label positions get -100."""
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX)

    def metrics(self, label_names: list[str], prefix: str) -> MetricCollection:
        """``<prefix>/acc`` (token accuracy over labelled first sub-tokens) and entity precision / recall / f1."""
        return MetricCollection(
            {"acc": MulticlassAccuracy(len(label_names), average="micro", ignore_index=IGNORE_INDEX),
             "entity": EntityScores(label_names)},
            prefix=f"{prefix}/", compute_groups=False)

    def loss_weight(self, labels: torch.Tensor) -> torch.Tensor:
        """Labelled tokens in a batch: what the token-classification loss averages over."""
        return (labels != IGNORE_INDEX).sum()

    def test_details(self, metrics, values, label_names):
        return {"entity_scores": metrics["entity"].per_type()}

    def card_labels(self, metrics: dict[str, Any]) -> str:
        return f"- **Entity types:** {', '.join(metrics['test/entity_scores'])}\n"

    def card_details(self, metrics: dict[str, Any]) -> str:
        return "Test entity scores per type (exact span and type match):\n\n" + _entity_table(
            metrics["test/entity_scores"])

    def read_output(self, result) -> dict:
        return {"entities": [{"type": e["entity_group"], "text": e["word"], "score": float(e["score"]),
                              "start": int(e["start"]), "end": int(e["end"])} for e in result]}
