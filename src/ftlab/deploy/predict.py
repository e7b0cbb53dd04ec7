"""Predict with a fine-tuned model: ``python -m ftlab.predict <job dir or model dir> --input texts.txt``.

Input: ``.txt`` (one text per line), ``.csv`` / ``.json`` / ``.jsonl`` / ``.parquet`` (a text column). Output: JSON
lines in input order with, by the model's task: the predicted label name, its probability and all class
probabilities (classifier); the entities with type, score and character offsets (token classifier); the generated
continuation (causal LM).

Every argument is checked before the model loads; a problem is one line ``ftlab.predict: ...`` (exit status 1) and
no output file is written (the output is written to a temporary file and renamed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from ftlab.core.atomic_files import atomic_write
from ftlab.core.checks import DataError, FtlabError, ToolParser, existing_dir, tool_name
from ftlab.core.library_bars import hide_library_bars
from ftlab.deploy.output_paths import check_output_target
from ftlab.deploy.trained_length import serving_max_length
from ftlab.model.local_files import model_dir_problem
from ftlab.tasks.registry import TASKS, get_task
from ftlab.tasks.tables import read_table
from ftlab.tasks.utf8 import read_text

MODEL_DIR_HELP = ("give a job directory (with model/) or an exported model directory (config.json, tokenizer files, "
                  "model.safetensors)")
INPUT_SUFFIXES = (".txt", ".csv", ".json", ".jsonl", ".parquet")
DEFAULT_MAX_LENGTH = 512  # tokens per text when the model directory does not record what it was trained at
INPUT_HELP = "give a .txt file (one text per line) or a .csv / .json / .jsonl / .parquet file with a text column"


def model_dir(path: str | Path) -> Path:
    """A job directory's ``model/`` or the given model directory itself."""
    path = Path(path)
    return path / "model" if (path / "model" / "config.json").exists() else path


def check_model_dir(path: str | Path) -> Path:
    """The exported model directory of a job directory or model directory, after checking that it can load:
    ``config.json`` (a fine-tuned model of one of ftlab's tasks), tokenizer files and complete weights.

    A problem is an ``FtlabError`` naming the path and what a valid directory holds.
    """
    given = existing_dir(path, MODEL_DIR_HELP)
    root = model_dir(given)
    if not (root / "config.json").is_file():
        raise FtlabError(f"{given}: neither a job directory (no model/config.json) nor a model directory (no "
                         f"config.json); {MODEL_DIR_HELP}")
    model_task(root)  # a model of one of ftlab's tasks, with a readable config
    if problem := model_dir_problem(root):
        raise FtlabError(f"{root}: {problem}")
    return root


def read_texts(path: str | Path, text_column: str = "text", option: str = "--input") -> list[str]:
    """Texts from a .txt (one per line, blank lines skipped), .csv, .json, .jsonl or .parquet file (a text column).

    Any problem (missing file, unsupported suffix, not UTF-8, no texts, no such column, a row without text) is a
    ``DataError`` naming ``option``, the file (and line, where it can be known) and what is valid.
    """
    path = Path(path)
    where = f"{option} {path}"
    if not path.exists():
        raise DataError(f"{where}: no such file; {INPUT_HELP}")
    if not path.is_file():
        raise DataError(f"{where}: not a file; {INPUT_HELP}")
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise DataError(f"{where}: unsupported suffix {suffix or '(none)'!r}; valid: {', '.join(INPUT_SUFFIXES)} "
                        "(.txt: one text per line; the others: a text column)")

    try:
        text = read_text(path, fix="save the file as UTF-8") if suffix != ".parquet" else None
    except DataError as err:
        raise DataError(f"{option} {err}") from None
    if suffix == ".txt":
        texts = [line for line in text.splitlines() if line.strip()]
        if not texts:
            raise DataError(f"{where}: no texts (the file is empty or has blank lines only); give one text per line")
        return texts
    if text is not None and not text.strip():
        raise DataError(f"{where}: no texts (the file is empty); give a table with a {text_column!r} column "
                        "(--text-column) and one text per row")
    try:
        frame = read_table(str(path), reads=(text_column,))
    except DataError as err:
        raise DataError(f"{option} {err}; give a table with a {text_column!r} column (--text-column) and one text "
                        "per row") from None
    if text_column not in frame.columns:
        raise DataError(f"{where}: no column {text_column!r} (--text-column); columns there: "
                        f"{', '.join(map(str, frame.columns))}")
    column = frame[text_column]
    for row, value in enumerate(column.tolist(), start=1):
        if value is None or (isinstance(value, float) and value != value) or not str(value).strip():
            raise DataError(f"{where}: row {row} has no text in column {text_column!r}; every row needs a text")
    return column.astype(str).tolist()


def model_task(path: Path) -> str:
    """The task an exported model was trained for, read from its config's architecture name.

    An architecture that no ftlab task produces (a base model without a task head, say) is an ``FtlabError``: a
    head would be added with random weights and the predictions would be meaningless.
    """
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FtlabError(f"{path / 'config.json'}: not valid JSON ({err}); export the model again") from None
    archs = config.get("architectures") if isinstance(config, dict) else None
    for arch in archs or []:
        for task in TASKS.values():
            if str(arch).endswith(task.architecture_suffix):
                return task.name
    valid = ", ".join(f"*{t.architecture_suffix} ({t.name})" for t in TASKS.values())
    raise FtlabError(f"{path / 'config.json'}: architectures={archs!r} is not a fine-tuned model of an ftlab task "
                     f"(a base checkpoint without a task head?); valid: {valid}")


def position_limit(path: Path) -> int | None:
    """The most tokens the model in ``path`` reads (its position embeddings; None: not bounded by its config)."""
    from transformers import AutoConfig

    from ftlab.model.architecture import max_positions

    return max_positions(AutoConfig.from_pretrained(path, trust_remote_code=False))


def predict(model_path: str | Path, texts: list[str], batch_size: int = 32, max_length: int | None = None,
            progress: bool = True, max_new_tokens: int = 64) -> Iterator[dict]:
    """Yield one prediction per text, batched: ``{"label", "score", "probs"}`` for a classifier (label names from
    the model's config), ``{"entities": [...]}`` for a token classifier, ``{"generated_text"}`` for a causal LM.

    ``max_length`` (tokens per text) defaults to the one the job trained at; one other than that is used with a
    warning naming both, and one longer than the model reads is an ``FtlabError`` naming where it came from
    (``serving_max_length``, the same check as the command line's ``--max-length``)."""
    path = check_model_dir(model_path)
    max_length = serving_max_length(path, max_length, DEFAULT_MAX_LENGTH, position_limit(path))
    # Returned, not yielded from: the checks above run when predict() is called, before anything is written.
    return get_task(model_task(path)).predict(path, texts, batch_size=batch_size, max_length=max_length,
                                               max_new_tokens=max_new_tokens, progress=progress)


def check_output(output: str | Path, input_path: str | Path | None = None, option: str = "--output",
                 model: Path | None = None, job: Path | None = None) -> Path:
    """An output file path that can be written: in an existing, writable directory, not a directory itself, not the
    input file, and not inside the ``model`` directory read or a job directory (``job``: the one given, whose
    ``model/`` is read; others are recognised on disk) -- predictions must never overwrite a job's results."""
    out = Path(output)
    if out.is_dir():
        raise FtlabError(f"{option} {out}: is a directory; give a file path such as {out / 'preds.jsonl'}")
    parent = out.parent
    if not parent.is_dir():
        raise FtlabError(f"{option} {out}: the directory {parent} does not exist; create it, or give a path in an "
                         "existing directory")
    reads = [(what, Path(path)) for what, path in (("the --input file", input_path), ("the model directory", model))
             if path is not None]
    check_output_target(out, option, reads, jobs=[job] if job is not None else [])
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FtlabError(f"{option} {out}: the directory {parent} is not writable; give a path in a writable "
                         "directory")
    return out


def _write_atomically(out: Path, lines: Iterator[str]) -> None:
    """Write ``lines`` to a temporary file next to ``out``, renamed to ``out`` only when all were written."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(lines)

    atomic_write(out, write)


def run(args: argparse.Namespace, prog: str = "python -m ftlab.predict") -> None:
    """Check every argument, then predict; problems are ``FtlabError``s."""
    for option in ("batch_size", "max_length", "max_new_tokens"):
        value = getattr(args, option)
        if value is not None and value <= 0:
            raise FtlabError(f"--{option.replace('_', '-')}={value}: must be a positive integer")
    path = check_model_dir(args.model)
    texts = read_texts(args.input, args.text_column)
    given = Path(args.model)
    out = (check_output(args.output, args.input, model=path, job=given if path != given else None)
           if args.output else None)

    from safetensors import SafetensorError

    lines = (json.dumps({"text": text, **pred}) + "\n" for text, pred in
             zip(texts, predict(path, texts, args.batch_size, args.max_length, max_new_tokens=args.max_new_tokens)))
    try:
        if out is None:
            sys.stdout.writelines(lines)
        else:
            _write_atomically(out, lines)
            print(f"{tool_name(prog)}: wrote {len(texts)} prediction(s) to {out}")
    except (OSError, SafetensorError) as err:
        detail = " ".join(str(err).split())[:300]
        raise FtlabError(f"{path}: predicting failed ({type(err).__name__}: {detail}); check that the model "
                         "directory loads with transformers and that the output can be written") from None


def main(argv: list[str] | None = None, prog: str = "python -m ftlab.predict") -> int:
    parser = ToolParser(prog, __doc__)
    parser.add_argument("model", help="a job directory (uses its model/) or an exported model directory")
    parser.add_argument("--input", required=True, help="texts: .txt (one per line), .csv, .json, .jsonl or .parquet")
    parser.add_argument("--output", help="JSON lines file (default: stdout)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, help="tokens the model reads per text (default: the max_length "
                                                       f"the job trained at, else {DEFAULT_MAX_LENGTH})")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="causal LM: tokens to generate (greedy)")
    args = parser.parse_args(argv)
    hide_library_bars()
    try:
        run(args, prog)
    except FtlabError as err:
        sys.exit(f"{tool_name(prog)}: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
