"""Reading tables (csv / json / jsonl / parquet) streamed in chunks, every problem named with its file and line however
deep in the file it is; the text inside must be UTF-8 (``ftlab.tasks.utf8``)."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from ftlab.core.atomic_files import atomic_write
from ftlab.core.checks import DataError
from ftlab.tasks.utf8 import check_utf8, lone_surrogates

log = logging.getLogger(__name__)

TABULAR_SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
CHUNK_ROWS = 10_000  # rows per chunk when a table is streamed
SCAN_FORMAT = 2  # bump when what a scan records or checks changes


def _first_char(path: str | Path) -> str:
    """The first character that is not white space ('' for a blank file), read without holding the file."""
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 16), b""):
            stripped = block.lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()
            if stripped:
                return chr(stripped[0])
    return ""


def _json_records(path: str, lines: bool, errors: str,
                  chunk_rows: int | None) -> Iterator[tuple[list[int], list[dict]]]:
    """Records of a JSON array file (read whole) or a JSON-lines file (streamed), in chunks of ``chunk_rows``, with the
    line (or array item) number of each; a broken line is named with its number. The file is checked UTF-8 already."""
    if not lines:
        try:
            rows = json.loads(Path(path).read_bytes().decode("utf-8-sig", errors=errors))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        numbered = enumerate(rows if isinstance(rows, list) else [rows], start=1)
    else:
        numbered = _json_lines(path, errors)
    chunk: list[dict] = []
    numbers: list[int] = []
    kind, replaced = "line" if lines else "item", False
    for where, row in numbered:
        if not isinstance(row, dict):
            raise DataError(f"{path}: {kind} {where} is {type(row).__name__}, not a JSON object with named columns")
        replaced = lone_surrogates(path, f"{kind} {where}", row, errors, warn=not replaced) or replaced
        chunk.append(row)
        numbers.append(where)
        if chunk_rows and len(chunk) == chunk_rows:
            yield numbers, chunk
            chunk, numbers = [], []
    if chunk:
        yield numbers, chunk


def _json_lines(path: str, errors: str) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8-sig", errors=errors) as file:
        for lineno, line in enumerate(file, start=1):
            if line.strip():
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg}); each line must be one JSON "
                                    "object") from None


def _csv_frames(path: str, errors: str, chunk_rows: int | None, as_text: bool,
                reads: Collection[str] | None) -> Iterator[Any]:
    """pandas' CSV reader, strict (a row with more fields than the header is an error, not an implicit index), in
    chunks of ``chunk_rows`` rows indexed by their line (exact for rows of one line each)."""
    import warnings

    import pandas as pd

    def strictly(read):  # the warnings filter must not outlive the read: the caller runs between chunks
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return read()

    _unique_header(path, errors, reads)
    first = 2
    try:
        with strictly(lambda: pd.read_csv(path, index_col=False, encoding="utf-8-sig", encoding_errors=errors,
                                          dtype=str if as_text else None, chunksize=chunk_rows or 1 << 62)) as reader:
            while (frame := strictly(lambda: next(reader, None))) is not None:
                yield frame.set_axis(range(first, first + len(frame)))
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


def _unique_header(path: str, errors: str, reads: Collection[str] | None) -> None:
    """A CSV header names each column the job ``reads`` (None: every column) once: pandas would rename a second
    ``label`` to ``label.1`` and the job would read the first silently. A repeated column the job does not read is
    left as pandas names it. (A header too broken to read is left to pandas' error.)"""
    with open(path, encoding="utf-8-sig", errors=errors, newline="") as file:
        reader = csv.reader(file)
        try:
            names = [name for name in next((row for row in reader if row), []) if name]  # unnamed: pandas names them
        except csv.Error:
            return
    read = set(names if reads is None else reads)
    if repeated := sorted({name for name in names if names.count(name) > 1 and name in read}):
        raise DataError(f"{path}:{reader.line_num}: the header names column(s) {', '.join(map(repr, repeated))} more "
                        "than once, and only the first would be read; valid: every column the job reads named once")


def iter_table(path: str, errors: str = "strict", chunk_rows: int | None = None, as_text: bool = False,
               reads: Collection[str] | None = None) -> Iterator[tuple[int, Any]]:
    """Read a csv / json / jsonl / parquet file as pandas DataFrames of at most ``chunk_rows`` rows (None: one frame),
    each indexed by the line of each row (the item of a JSON array, the row of a parquet file) and given with the
    first of them. Only a JSON array file is ever held whole.

    ``as_text``: CSV cells stay strings as written (``1`` stays ``1``, never ``1.0`` because another cell is empty).
    ``reads``: the columns the caller reads, which a CSV header must name once (None: every column).
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
            frames = _csv_frames(path, errors, chunk_rows, as_text, reads)
        else:
            lines = suffix == ".jsonl" or first != "["
            frames = (pd.DataFrame(rows, index=numbers) for numbers, rows in
                      _json_records(path, lines, errors, chunk_rows))
    rows = 0
    for frame in frames:
        rows += len(frame)
        if len(frame):
            yield int(frame.index[0]), frame
    if rows == 0:
        raise DataError(f"{path}: no rows (a header, or an empty list, only)")


def _parquet_frames(path: str, chunk_rows: int | None) -> Iterator[Any]:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
        first = 1
        for batch in file.iter_batches(batch_size=chunk_rows or max(file.metadata.num_rows, 1)):
            yield batch.to_pandas().set_axis(range(first, first + batch.num_rows))  # not a saved pandas index
            first += batch.num_rows
    except Exception as err:  # pyarrow's errors have no common base class
        raise DataError(f"{path}: not a readable parquet file ({str(err).splitlines()[0]})") from None


def read_table(path: str, errors: str = "strict", reads: Collection[str] | None = None):
    """A whole csv / json / jsonl / parquet file as one pandas DataFrame with at least one row (``iter_table``'s
    checks and errors; ``reads``: the columns the caller reads, None for all)."""
    import pandas as pd

    return pd.concat([frame for _, frame in iter_table(path, errors, reads=reads)], ignore_index=True)


def scan_table(path: str, errors: str, column: str, cache_dir: str | None,
               reads: Collection[str] | None = None) -> tuple[list[str], list[str]]:
    """A table's columns and the distinct non-empty values of ``column`` (as written), from one streaming pass that
    also checks every row; remembered under ``cache_dir`` by the file's path, size and modification time, so the
    checks of a later job on the same file cost nothing. ``reads``: the columns the job reads (``iter_table``)."""
    stat = Path(path).stat()
    ident = [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, errors, column,
             None if reads is None else sorted(reads), SCAN_FORMAT]
    memo = None
    if cache_dir:
        key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]
        memo = Path(os.path.expanduser(cache_dir)) / "scans" / f"{key}.json"
        try:
            found = json.loads(memo.read_text())
            return found["columns"], found["values"]
        except (OSError, ValueError, KeyError, TypeError):  # none yet, or unreadable: scan again
            pass
    columns: dict[str, None] = {}  # every chunk's columns, in order (JSON records need not all have every key)
    values: set[str] = set()
    for _, frame in iter_table(path, errors, CHUNK_ROWS, as_text=True, reads=reads):
        columns.update(dict.fromkeys(map(str, frame.columns)))
        if column in frame.columns:
            cells = frame[column].dropna().astype(str)
            values.update(cells[cells.str.strip() != ""])
    after = Path(path).stat()
    if memo is not None and (after.st_size, after.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns):
        try:  # a cache that cannot be written only costs the next job this scan again
            memo.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(memo, lambda p: p.write_text(json.dumps({"columns": list(columns), "values": sorted(values)})))
        except OSError as err:
            log.warning("%s: could not remember the checks of %s (%s)", memo.parent, path, err)
    return list(columns), sorted(values)
