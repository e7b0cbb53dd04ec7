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
    from ftlab.tasks.readers import read_table

    frame = read_table(str(path))
    if text_column not in frame.columns:
        raise SystemExit(f"ftlab.predict: column {text_column!r} not in {path}; columns: {', '.join(frame.columns)}")
    return frame[text_column].astype(str).tolist()


def model_task(path: Path) -> str:
    """The task an exported model was trained for, read from its config's architecture name."""
    config = json.loads((path / "config.json").read_text())
    arch = (config.get("architectures") or [""])[0]
    return next((t.name for t in TASKS.values() if arch.endswith(t.architecture_suffix)), "text_classification")


def predict(model_path: str | Path, texts: list[str], batch_size: int = 32, max_length: int = 512,
            progress: bool = True, max_new_tokens: int = 64) -> Iterator[dict]:
    """Yield one prediction per text, batched: ``{"label", "score", "probs"}`` for a classifier (label names from
    the model's config), ``{"entities": [...]}`` for a token classifier, ``{"generated_text"}`` for a causal LM."""
    path = model_dir(model_path)
    yield from get_task(model_task(path)).predict(path, texts, batch_size=batch_size, max_length=max_length,
                                                  max_new_tokens=max_new_tokens, progress=progress)


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
