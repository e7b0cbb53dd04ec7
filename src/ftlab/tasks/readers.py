"""Reading data files and splitting them, shared by every task: tables, split keys, sample limits, the ignore index."""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import logging

import numpy as np

from ftlab.assets import resolve_path
from ftlab.checks import Checker, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SPLIT_PATHS = (("train", "path"), ("validation", "val_path"), ("test", "test_path"))  # data config key per split
TABULAR_SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# Keys under ``data.`` that every task reads; each task adds its own (Task.data_options).
COMMON_DATA_OPTIONS = ("source", "path", "val_path", "test_path", "val_size", "test_size", "max_train_samples",
                       "max_eval_samples", "num_workers", "cache_dir", "encoding_errors", "group_by_length")
IGNORE_INDEX = -100  # label of positions the loss and the metrics skip (padding, prompts, non-first sub-tokens)


def read_text(path: str | Path, errors: str = "strict",
              fix: str = "save the file as UTF-8, or set data.encoding_errors=replace") -> str:
    """A file's text, which must be UTF-8 (a byte-order mark is dropped): a ``DataError`` names the file, the line of
    the first bad byte and ``fix``.

    ``errors="replace"`` (``data.encoding_errors``) reads such bytes as U+FFFD instead, with a warning naming the file.
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        if errors == "replace":
            log.warning("%s:%d: not UTF-8; undecodable bytes read as U+FFFD (data.encoding_errors=replace)", path, line)
            return data.decode("utf-8-sig", errors="replace")
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {data[err.start]:#04x}); {fix}") from None


def check_utf8(path: str | Path, errors: str = "strict",
               fix: str = "save the file as UTF-8, or set data.encoding_errors=replace") -> None:
    """``read_text``'s check without holding the file: one streaming pass that names the line of the first byte that
    is not UTF-8 (a ``DataError``, or a warning with ``errors="replace"``)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 24), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                line += block.count(b"\n", 0, max(err.start, 0))
                if errors == "replace":
                    log.warning("%s:%d: not UTF-8; undecodable bytes read as U+FFFD (data.encoding_errors=replace)",
                                path, line)
                    return
                raise DataError(f"{path}:{line}: not UTF-8 text (byte {block[max(err.start, 0)]:#04x}); {fix}") from None
            line += block.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:  # the file ends inside a multi-byte character
            if errors != "replace":
                raise DataError(f"{path}:{line}: not UTF-8 text (a cut multi-byte character at the end); {fix}") from None


def _first_char(path: str | Path) -> str:
    """The first character that is not white space ('' for a blank file), read without holding the file."""
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 16), b""):
            stripped = block.lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()
            if stripped:
                return chr(stripped[0])
    return ""


def _json_records(path: str, lines: bool, errors: str, chunk_rows: int | None) -> Iterator[tuple[int, list[dict]]]:
    """Records of a JSON array file (read whole) or a JSON-lines file (streamed), in chunks of ``chunk_rows``, each with
    the line (or array item) number of its first record; a broken line is named with its number."""
    if not lines:
        try:
            rows = json.loads(read_text(path, errors))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        numbered = enumerate(rows if isinstance(rows, list) else [rows], start=1)
    else:
        numbered = _json_lines(path, errors)
    chunk: list[dict] = []
    first = 1
    for where, row in numbered:
        if not isinstance(row, dict):
            kind = "line" if lines else "item"
            raise DataError(f"{path}: {kind} {where} is {type(row).__name__}, not a JSON object with named columns")
        if not chunk:
            first = where
        chunk.append(row)
        if chunk_rows and len(chunk) == chunk_rows:
            yield first, chunk
            chunk = []
    if chunk:
        yield first, chunk


def _json_lines(path: str, errors: str) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8-sig", errors=errors) as file:
        for lineno, line in enumerate(file, start=1):
            if line.strip():
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg}); each line must be one JSON "
                                    "object") from None


def _csv_frames(path: str, errors: str, chunk_rows: int | None, as_text: bool) -> Iterator[tuple[int, Any]]:
    """pandas' CSV reader, strict (a row with more fields than the header is an error, not an implicit index), in
    chunks of ``chunk_rows`` rows, each with the line of its first row (exact for rows of one line each)."""
    import warnings

    import pandas as pd

    def strictly(read):  # the warnings filter must not outlive the read: the caller runs between chunks
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return read()

    first = 2
    try:
        with strictly(lambda: pd.read_csv(path, index_col=False, encoding="utf-8-sig", encoding_errors=errors,
                                          dtype=str if as_text else None, chunksize=chunk_rows or 1 << 62)) as reader:
            while (frame := strictly(lambda: next(reader, None))) is not None:
                yield first, frame.reset_index(drop=True)
                first += len(frame)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, pd.errors.ParserWarning) as err:
        where = ""
        if "EOF inside string" not in str(err):  # an unterminated quote: pandas names the row it starts at
            with open(path, encoding="utf-8-sig", errors=errors, newline="") as file:
                reader = csv.reader(file)
                width = len(next(reader, []))
                bad = next((reader.line_num for row in reader if row and len(row) != width), None)
            where = f" at line {bad}: expected {width} fields" if bad else ""
        raise DataError(f"{path}: malformed CSV{where} ({' '.join(str(err).split())})") from None


def iter_table(path: str, errors: str = "strict", chunk_rows: int | None = None,
               as_text: bool = False) -> Iterator[tuple[int, Any]]:
    """Read a csv / json / jsonl / parquet file as pandas DataFrames of at most ``chunk_rows`` rows (None: one frame),
    each with the line (row, for parquet) its first row is on. Only a JSON array file is ever held whole.

    ``as_text``: CSV cells stay strings as written (``1`` stays ``1``, never ``1.0`` because another cell is empty).
    Any problem (not UTF-8, malformed CSV or JSON, no rows) is a ``DataError`` naming the file and, where it can be
    known, the line, however deep in the file it is.
    """
    import pandas as pd

    suffix = Path(path).suffix.lower()
    if suffix not in TABULAR_SUFFIXES:
        raise DataError(f"{path}: unsupported data file; valid suffixes: {', '.join(TABULAR_SUFFIXES)}")
    if suffix == ".parquet":
        frames = _parquet_frames(path, chunk_rows)
    else:
        check_utf8(path, errors)
        first = _first_char(path)
        if not first:
            raise DataError(f"{path}: the file is empty")
        if suffix == ".csv":
            frames = _csv_frames(path, errors, chunk_rows, as_text)
        else:
            lines = suffix == ".jsonl" or first != "["
            frames = ((at, pd.DataFrame(rows)) for at, rows in _json_records(path, lines, errors, chunk_rows))
    rows = 0
    for at, frame in frames:
        rows += len(frame)
        if len(frame):
            yield at, frame
    if rows == 0:
        raise DataError(f"{path}: no rows (a header, or an empty list, only)")


def _parquet_frames(path: str, chunk_rows: int | None) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
        first = 1
        for batch in file.iter_batches(batch_size=chunk_rows or max(file.metadata.num_rows, 1)):
            yield first, batch.to_pandas()
            first += batch.num_rows
    except Exception as err:  # pyarrow's errors have no common base class
        raise DataError(f"{path}: not a readable parquet file ({str(err).splitlines()[0]})") from None


def read_table(path: str, errors: str = "strict"):
    """A whole csv / json / jsonl / parquet file as one pandas DataFrame with at least one row (``iter_table``'s
    checks and errors)."""
    import pandas as pd

    frames = [frame for _, frame in iter_table(path, errors)]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def sample_limit(cfg: dict[str, Any], split: str) -> int | None:
    """``max_train_samples`` for the training split, ``max_eval_samples`` for validation and test (None: all)."""
    return cfg.get("max_train_samples" if split == "train" else "max_eval_samples")


def split_items(raw: dict[str, list], key, val_size: float, test_size: float, seed: int) -> dict[str, list]:
    """Deduplicate the training items by ``key(item)`` (also against given validation / test items, and dropping
    blank ones), then split off the validation and test parts the source does not provide (seeded, at least one
    item each)."""
    seen = {key(item) for split in ("validation", "test") for item in raw.get(split, [])}
    items = []
    for item in raw["train"]:
        k = key(item)
        if k.strip() and k not in seen:
            seen.add(k)
            items.append(item)
    order = np.random.default_rng(seed).permutation(len(items)).tolist()
    n_test, n_val = (0 if split in raw else max(1, int(round(size * len(items))))
                     for split, size in (("test", test_size), ("validation", val_size)))
    parts = {"test": order[:n_test], "validation": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    return {split: raw[split] if split != "train" and split in raw else [items[i] for i in idx]
            for split, idx in parts.items()}


def check_columns(c: Checker, columns: list, file, wanted: tuple[str, ...]) -> None:
    """Every configured column (``data.text_column``, ...) is among the ``columns`` of the table read from ``file``."""
    for col in wanted:
        if c.get(col) not in columns:
            c.fail(col, f"column absent from {file}; columns there: {', '.join(map(str, columns))}")


SCAN_FORMAT = 1  # bump when what a scan records changes
CHUNK_ROWS = 10_000  # rows per chunk when a table is streamed


def scan_table(path: str, errors: str, column: str, cache_dir: str | None) -> tuple[list[str], list[str]]:
    """A table's columns and the distinct non-empty values of ``column`` (as written), from one streaming pass that
    also checks every row; remembered under ``cache_dir`` by the file's path, size and modification time, so the
    checks of a later job on the same file cost nothing."""
    stat = Path(path).stat()
    ident = [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, errors, column, SCAN_FORMAT]
    memo = None
    if cache_dir:
        key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]
        memo = Path(os.path.expanduser(cache_dir)) / "scans" / f"{key}.json"
        if memo.is_file():
            found = json.loads(memo.read_text())
            return found["columns"], found["values"]
    columns: list[str] = []
    values: set[str] = set()
    for _, frame in iter_table(path, errors, CHUNK_ROWS, as_text=True):
        columns = columns or [str(name) for name in frame.columns]
        if column in frame.columns:
            cells = frame[column].dropna().astype(str)
            values.update(cells[cells.str.strip() != ""])
    if memo is not None:
        from ftlab.caching import atomic_write

        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(memo, lambda p: p.write_text(json.dumps({"columns": columns, "values": sorted(values)})))
    return columns, sorted(values)


def check_splits(c: Checker) -> None:
    """``data.val_size`` / ``test_size`` leave data in every split; sample limits are positive integers."""
    if c.get("data.encoding_errors") is not None:
        c.choice("data.encoding_errors", ("strict", "replace"))
    for key, provided in (("data.val_size", "data.val_path"), ("data.test_size", "data.test_path")):
        if c.fraction(key) and c.get(key) == 0 and c.get(provided) is None and c.get("data.source") != "hub":
            c.fail(key, f"must be > 0 when {provided} is not given (the split would be empty)")
    sizes = [c.get("data.val_size"), c.get("data.test_size")]
    if all(isinstance(v, (int, float)) for v in sizes) and sum(sizes) >= 1:
        c.fail("data.val_size", f"val_size + test_size = {sum(sizes)} leaves no training data")
    for key in ("data.max_train_samples", "data.max_eval_samples"):
        if c.get(key) is not None:
            c.positive(key, int)


def check_files(c: Checker, columns: tuple[str, ...]) -> None:
    """Each configured split path exists; a table has ``columns``; a folder needs ``data.source=folder``."""
    for key in (f"data.{name}" for _, name in SPLIT_PATHS):
        value = c.get(key)
        if value is None:
            if key == "data.path":
                c.fail(key, "required: the training data file or folder")
            continue
        path = Path(resolve_path(str(value)))
        if not path.exists():
            c.fail(key, f"no such file or directory: {path}")
        elif path.is_file() and path.suffix.lower() in TABULAR_SUFFIXES:
            try:
                check_columns(c, list(read_table(str(path), c.get("data.encoding_errors") or "strict").columns), path,
                              columns)
            except DataError as err:
                c.problems.append(f"{key}: {err}")
        elif path.is_dir() and c.get("data.source") != "folder":
            c.fail(key, "is a folder; use data.source=folder, or give a file")
