"""Predict with a fine-tuned model: ``python -m ftlab.predict <job dir or model dir> --input texts.txt``.

Input: ``.txt`` (one text per line), ``.csv`` / ``.jsonl`` (a text column). Output: JSON lines in input order with,
by the model's task: the predicted label name, its probability and all class probabilities (classifier); the
entities with type, score and character offsets (token classifier); the generated continuation (causal LM).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator

from ftlab.tasks import TASKS, get_task


def model_dir(path: str | Path) -> Path:
    """A job directory's ``model/`` or the given model directory itself."""
    path = Path(path)
    return path / "model" if (path / "model" / "config.json").exists() else path


def read_texts(path: str | Path, text_column: str = "text") -> list[str]:
    """Texts from a .txt (one per line), .csv or .jsonl/.json file."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    from ftlab.data import read_table

    frame = read_table(str(path))
    if text_column not in frame.columns:
        raise SystemExit(f"ftlab.predict: column {text_column!r} not in {path}; columns: {', '.join(frame.columns)}")
    return frame[text_column].astype(str).tolist()


def model_task(path: Path) -> str:
    """The task an exported model was trained for, read from its config's architecture name."""
    config = json.loads((path / "config.json").read_text())
    arch = (config.get("architectures") or [""])[0]
    return next((t.name for t in TASKS.values() if arch.endswith(t.architecture_suffix)), "text_classification")


def _pipeline_outputs(path: Path, task: str, texts: list[str], batch_size: int, max_new_tokens: int,
                      progress: bool) -> Iterator[dict]:
    """Entities or generated text through ``transformers.pipeline``, batched, in input order."""
    from tqdm.auto import tqdm
    from transformers import pipeline

    spec = get_task(task)
    pipe = pipeline(spec.pipeline_tag, model=str(path), **dict(spec.pipeline_kwargs))
    kwargs = {}
    if task == "causal_lm":
        kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, "return_full_text": False}
    results = pipe((t for t in texts), batch_size=batch_size, **kwargs)
    for result in tqdm(results, total=len(texts), disable=not progress, desc="predicting", unit="text"):
        if task == "token_classification":
            yield {"entities": [{"type": e["entity_group"], "text": e["word"], "score": float(e["score"]),
                                 "start": int(e["start"]), "end": int(e["end"])} for e in result]}
        else:
            yield {"generated_text": result[0]["generated_text"]}


def predict(model_path: str | Path, texts: list[str], batch_size: int = 32, max_length: int = 512,
            progress: bool = True, max_new_tokens: int = 64) -> Iterator[dict]:
    """Yield one prediction per text, batched: ``{"label", "score", "probs"}`` for a classifier (label names from
    the model's config), ``{"entities": [...]}`` for a token classifier, ``{"generated_text"}`` for a causal LM."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = model_dir(model_path)
    task = model_task(path)
    if task != "text_classification":
        yield from _pipeline_outputs(path, task, texts, batch_size, max_new_tokens, progress)
        return
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), batch_size), disable=not progress, desc="predicting", unit="batch"):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt")
            probs = model(**batch).logits.softmax(-1)
            for row in probs.tolist():
                best = max(range(len(row)), key=row.__getitem__)
                yield {"label": names[best], "score": row[best], "probs": dict(zip(names, row))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftlab.predict", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a job directory (uses its model/) or an exported model directory")
    parser.add_argument("--input", required=True, help="texts: .txt (one per line), .csv or .jsonl")
    parser.add_argument("--output", help="JSON lines file (default: stdout)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--max-new-tokens", type=int, default=64, help="causal LM: tokens to generate (greedy)")
    args = parser.parse_args(argv)
    if not (model_dir(args.model) / "config.json").exists():
        parser.error(f"{args.model} holds no exported model (config.json)")
    texts = read_texts(args.input, args.text_column)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for text, pred in zip(texts, predict(args.model, texts, args.batch_size, args.max_length,
                                                  max_new_tokens=args.max_new_tokens)):
            out.write(json.dumps({"text": text, **pred}) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
