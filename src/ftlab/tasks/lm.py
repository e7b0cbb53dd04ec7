"""Causal language modelling: plain text packed or chunked to ``max_length``, or prompt/response pairs with the loss
masked on the prompt (through the tokenizer's chat template when it has one)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ftlab.core.assets import resolve_path
from ftlab.tasks.base import Task
from ftlab.tasks.readers import IGNORE_INDEX, SPLIT_PATHS, is_junk, sample_limit, split_items
from ftlab.tasks.specs import TEXT_SUFFIXES, CausalLMSpec
from ftlab.tasks.tables import read_table
from ftlab.tasks.utf8 import read_text

log = logging.getLogger(__name__)


def read_documents(cfg: dict[str, Any]) -> dict[str, list]:
    """Documents (str) or ``(prompt, response)`` pairs per split given by the source.

    ``folder``: every text file under ``path``, recursively (sub-folders such as BBC's topics are just grouping),
    but for an OS's or a tool's (``readers.is_junk``: ``.ipynb_checkpoints``, ``__MACOSX``).
    ``files``: a text file (one document) or a csv / json / jsonl / parquet table with a text column, or with
    prompt and response columns when ``format=prompt_response``.
    """
    out = {}
    errors = cfg.get("encoding_errors", "strict")
    for split, key in SPLIT_PATHS:
        if not cfg.get(key):
            continue
        path = Path(resolve_path(cfg[key]))
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
                           and not any(map(is_junk, p.relative_to(path).parts)))
            out[split] = [read_text(p, errors) for p in files]
        elif path.suffix.lower() in TEXT_SUFFIXES:
            out[split] = [read_text(path, errors)]
        else:
            pairs = cfg.get("format", "text") == "prompt_response"
            columns = (cfg["prompt_column"], cfg["response_column"]) if pairs else (cfg["text_column"],)
            frame = read_table(str(path), errors, reads=columns)
            if pairs:
                prompts, responses = frame[cfg["prompt_column"]], frame[cfg["response_column"]]
                out[split] = list(zip(prompts.astype(str), responses.astype(str)))
            else:
                out[split] = frame[cfg["text_column"]].astype(str).tolist()
    return out


def split_documents(raw: dict[str, list], val_size: float, test_size: float, seed: int) -> dict[str, list]:
    """Deduplicate, then split whole documents (never chunks of one document) into the missing splits, seeded."""
    return split_items(raw, str, val_size, test_size, seed)


def chunk(ids: list[int], max_length: int) -> list[list[int]]:
    """Consecutive blocks of ``max_length`` tokens; the last block keeps the remainder (no token is dropped)."""
    return [ids[i:i + max_length] for i in range(0, len(ids), max_length)]


def document_ids(tokenizer, doc: str) -> list[int]:
    """A plain-text document's token ids as the LM task trains on them: no special tokens, EOS appended."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return tokenizer(doc, add_special_tokens=False)["input_ids"] + eos


def tokenize_documents(tokenizer, docs: list[str], max_length: int, packing: bool) -> list[list[int]]:
    """Token blocks for plain-text training. Each document ends with EOS.

    ``packing``: documents are concatenated, then cut into ``max_length`` blocks (a block may span documents,
    as in GPT pre-training); otherwise each document is cut separately (more padding, no cross-document context).
    """
    encoded = [document_ids(tokenizer, doc) for doc in docs]
    if packing:
        return chunk([t for ids in encoded for t in ids], max_length)
    return [block for ids in encoded for block in chunk(ids, max_length)]


def prompt_and_response_text(tokenizer, prompt: str, response: str) -> tuple[str, str]:
    """The prompt text (up to where the answer starts) and the response text, so that prompt + response is the
    whole formatted conversation. With a chat template the response includes the end-of-turn tokens."""
    if tokenizer.chat_template:
        user = [{"role": "user", "content": prompt}]
        head = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": response}], tokenize=False)
        if not full.startswith(head):
            raise ValueError("the chat template does not render the prompt as a prefix of the conversation")
        return head, full[len(head):]
    return f"{prompt}\n", response + (tokenizer.eos_token or "")


def encode_pair(tokenizer, prompt: str, response: str, max_length: int) -> dict[str, list[int]]:
    """``input_ids`` = prompt + response tokens; ``labels`` = -100 on the prompt, the response tokens after it.

    The two parts are tokenised separately so the boundary is exact whatever the tokenizer merges.
    """
    head, tail = prompt_and_response_text(tokenizer, prompt, response)
    # A chat template writes its own special tokens; plain text gets the tokenizer's usual ones (e.g. BOS).
    prompt_ids = tokenizer(head, add_special_tokens=not tokenizer.chat_template)["input_ids"]
    response_ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + response_ids)[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


class PadCollator:
    """Right-pad ``input_ids`` with the pad token, ``attention_mask`` with 0 and ``labels`` with -100."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(row["input_ids"]) for row in rows)
        pads = {"input_ids": self.pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX}
        return {key: torch.tensor([list(row[key]) + [pad] * (width - len(row[key])) for row in rows])
                for key, pad in pads.items()}


def build_rows(cfg: dict[str, Any], tokenizer, docs: list, max_length: int, split: str) -> list[dict[str, list]]:
    """Training rows of one split: prompt/response pairs with the prompt masked, or packed / chunked text."""
    if cfg.get("format", "text") == "prompt_response":
        rows = [encode_pair(tokenizer, p, r, max_length) for p, r in docs]
        dropped = sum(all(label == IGNORE_INDEX for label in row["labels"]) for row in rows)
        if dropped:
            log.warning("%s: %d prompt(s) fill max_length=%d, leaving no response token: skipped",
                        split, dropped, max_length)
        return [row for row in rows if any(label != IGNORE_INDEX for label in row["labels"])]
    return [{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)}
            for ids in tokenize_documents(tokenizer, docs, max_length, cfg.get("packing", True))]


class CausalLM(CausalLMSpec, Task):
    """Next-token prediction: token-weighted loss and perplexity; the exported model generates text."""

    def prepare(self, cfg: dict[str, Any], tokenizer, max_length: int, seed: int, work_dir=None):
        """Tokenised training sequences per split; no label names."""
        import datasets

        splits = split_documents(read_documents(cfg), cfg["val_size"], cfg["test_size"], seed)
        built = {}
        for split, docs in splits.items():
            rows = build_rows(cfg, tokenizer, docs, max_length, split)
            rows = rows[:sample_limit(cfg, split) or len(rows)]
            built[split] = datasets.Dataset.from_dict(
                {k: [row[k] for row in rows] for k in ("input_ids", "attention_mask", "labels")})
        return datasets.DatasetDict(built), []

    def collator(self, tokenizer) -> PadCollator:
        """Dynamic right padding with the tokenizer's pad token; padded labels get -100."""
        return PadCollator(tokenizer.pad_token_id)

    def loss_weight(self, labels: torch.Tensor) -> torch.Tensor:
        """Number of tokens the shifted causal-LM loss averages over (labels after the first position, not -100)."""
        return (labels[:, 1:] != IGNORE_INDEX).sum()

    def logits_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy: position t predicts label t + 1 (the shift the model's own loss makes)."""
        return super().logits_loss(logits[:, :-1], labels[:, 1:])

    def derived_metrics(self, prefix: str, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``<prefix>/ppl`` = exp of the token-weighted loss."""
        return {f"{prefix}/ppl": torch.exp(values[f"{prefix}/loss"])}

    def generation_kwargs(self, max_new_tokens: int) -> dict[str, Any]:
        return {"max_new_tokens": max_new_tokens, "do_sample": False, "return_full_text": False}

    def read_output(self, result) -> dict:
        return {"generated_text": result[0]["generated_text"]}
