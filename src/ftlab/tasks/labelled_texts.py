"""Labelled texts: reading label folders, tables and hub datasets (their splits: ``labelled_splits``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ftlab.core.assets import resolve_path
from ftlab.core.checks import DataError
from ftlab.tasks.readers import SPLIT_PATHS, is_junk
from ftlab.tasks.tables import CHUNK_ROWS, iter_table
from ftlab.tasks.utf8 import read_text

log = logging.getLogger(__name__)

Examples = tuple[list[str], list[Any]]  # (texts, raw labels)


FOLDER_LAYOUT = "one sub-folder per class, named by its label, holding that class's text files (e.g. sport/001.txt)"


def text_files(folder: Path) -> list[Path]:
    """A class folder's text files, by name, junk left out."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not is_junk(p.name))


def class_folders(path: str, distinct_case: bool = False) -> dict[str, Path]:
    """A label folder's class sub-folders (those holding a text file, junk left out) by their label: the folder name,
    spelled as ``typed_labels`` spells a table's labels (never typed). A ``DataError`` names ``path`` when it has no
    class sub-folder, or two spellings of one label (``distinct_case``: names differing in case are two classes)."""
    folders = [p for p in sorted(Path(path).iterdir()) if p.is_dir() and not is_junk(p.name)]
    full = [p for p in folders if text_files(p)]
    if not full:
        problem = "no class sub-folder holds a text file" if folders else "no class sub-folders"
        raise DataError(f"{path}: {problem}; valid: {FOLDER_LAYOUT}")
    names = typed_labels({p.name for p in full}, path, as_table=False, distinct_case=distinct_case)
    return {names[p.name]: p for p in full}


def folder_rows(path: str, errors: str = "strict",
                distinct_case: bool = False) -> tuple[list[str], list[str], list[str]]:
    """A label folder's texts, their labels and their files (relative to ``path``, for messages), class by class."""
    texts, labels, files = [], [], []
    for label, folder in sorted(class_folders(path, distinct_case).items()):
        for file in text_files(folder):
            texts.append(read_text(file, errors))
            labels.append(label)
            files.append(file.relative_to(path).as_posix())
    return texts, labels, files


def read_folder(path: str, errors: str = "strict") -> Examples:
    """One sub-folder per label, one text file per example (``folder_rows``)."""
    texts, labels, _ = folder_rows(path, errors)
    return texts, labels


Located = tuple[list[str], list[Any], list[Any] | None]  # (texts, labels, where each row is: None for its number)


class SourceChunks:
    """A split's labelled rows as its source gives them, chunk by chunk, each ``(texts, labels, where)``: ``where``
    places each row in ``source`` (its line in a table, its file in a label folder) for messages. A table's labels are
    cells as written (``typed`` False): they are typed once the whole column is known (``typed_labels``, with
    ``distinct_case``), as a whole-file reader would."""

    def __init__(self, chunks: Iterable[Located], source: str, typed: bool = False, unit: str = "row",
                 distinct_case: bool = False):
        self.chunks, self.source, self.typed, self.unit = chunks, source, typed, unit
        self.distinct_case = distinct_case

    def __iter__(self) -> Iterator[Located]:
        return iter(self.chunks)


Chunks = Iterable[Examples] | SourceChunks  # a split's rows: pairs (their labels typed already), or a source's


def source_chunks(cfg: dict[str, Any]) -> dict[str, SourceChunks]:
    """Raw examples per available split, as given by the source (no cleaning yet), labels as strings: files are
    streamed in chunks (never held whole), label folders and hub datasets come as one chunk (``SourceChunks``)."""
    source = cfg["source"]
    errors = cfg.get("encoding_errors", "strict")
    distinct_case = cfg.get("label_case") == "distinct"
    if source == "folder":
        path = resolve_path(cfg["path"])
        return {"train": SourceChunks([folder_rows(path, errors, distinct_case)], path, typed=True)}
    if source == "files":
        return {split: SourceChunks(_table_chunks(path, cfg["text_column"], cfg["label_column"], errors), path,
                                    unit="line", distinct_case=distinct_case)
                for split, key in SPLIT_PATHS if cfg.get(key) for path in [resolve_path(cfg[key])]}
    if source == "hub":
        import datasets

        ds = datasets.load_dataset(cfg["name"], cfg.get("config_name"))
        out = {}
        for split, key in (("train", "train_split"), ("validation", "val_split"), ("test", "test_split")):
            if cfg.get(key):
                part = ds[cfg[key]]
                feature = part.features[cfg["label_column"]]
                labels = part[cfg["label_column"]]
                if hasattr(feature, "int2str"):
                    labels = [feature.int2str(i) for i in labels]
                texts = [str(t) for t in part[cfg["text_column"]]]
                out[split] = SourceChunks([(texts, [str(v) for v in labels], None)],
                                          f"{cfg['name']} ({cfg[key]} split)", typed=True)
        return out
    raise ValueError(f"data.source={source!r}; valid choices: folder, files, hub")


def load_source(cfg: dict[str, Any]) -> dict[str, Examples]:
    """``source_chunks`` with each split's chunks joined (and a table's labels typed): the whole source in memory
    (small data, tests)."""
    out = {}
    for split, chunks in source_chunks(cfg).items():
        texts, labels = [], []
        for chunk_texts, chunk_labels, _ in chunks:
            texts += chunk_texts
            labels += chunk_labels
        if not chunks.typed:
            typed = typed_labels(set(labels), chunks.source, distinct_case=chunks.distinct_case)
            labels = [typed[label] for label in labels]
        out[split] = (texts, labels)
    return out


def _table_chunks(path: str, text_column: str, label_column: str, errors: str) -> Iterator[Located]:
    """A table's labelled rows with their lines, chunk by chunk; rows with an empty text or label are dropped with one
    warning for the file (never a class called ``nan``), and a file without any labelled row is a ``DataError``."""
    import pandas as pd

    dropped, where, kept = 0, [], 0
    for _, frame in iter_table(path, errors, CHUNK_ROWS, as_text=True, reads=(text_column, label_column)):
        missing = pd.Series(index=frame.index, dtype=object)  # a JSON record without the key: an empty cell
        texts, labels = frame.get(text_column, missing), frame.get(label_column, missing)
        empty = texts.isna() | (texts.astype(str).str.strip() == "") | labels.isna() | (
            labels.astype(str).str.strip() == "")
        dropped += int(empty.sum())
        where += list(frame.index[empty][:5 - len(where)])  # iter_table indexes rows by their line
        kept += int((~empty).sum())
        if (~empty).any():
            yield texts[~empty].astype(str).tolist(), labels[~empty].astype(str).tolist(), frame.index[~empty].tolist()
    if not kept:
        raise DataError(f"{path}: no row has both a text ({text_column}) and a label ({label_column})")
    if dropped:
        log.warning("%s: %d row(s) with an empty %s or %s dropped (lines %s%s)", path, dropped, text_column,
                    label_column, ", ".join(map(str, where)), ", ..." if dropped > 5 else "")


BOOLEANS = {"True": "True", "TRUE": "True", "true": "True", "False": "False", "FALSE": "False", "false": "False"}


def typed_labels(cells: set[str], source: str, as_table: bool = True, distinct_case: bool = False) -> dict[str, str]:
    """The class each label cell of ``source`` (a table column; the class folders of a label folder: ``as_table``
    False, never typed) stands for. Surrounding white space is dropped (a CSV artefact: ``text, sport``); then a table
    column reads as pandas types a whole column: all whole numbers -> ``1`` (also ``01``, ``1.0``), all numbers ->
    ``1.5`` and ``1.0``, all booleans -> ``True`` / ``False`` (in any case), anything else as written. Typing per chunk
    would make ``1`` and ``1.0`` two classes.

    Two labels that differ only in surrounding white space or in case (``sport``, ``" sport"``, ``Sport``) are a
    ``DataError`` naming ``source`` and both: one class or two would be a guess. ``distinct_case``
    (``data.label_case=distinct``) says the guess: labels that differ in case are different classes."""
    stripped: dict[str, str] = {}  # stripped -> the cell as written
    for cell in sorted(cells):
        if (first := stripped.setdefault(cell.strip(), cell)) != cell:
            raise _two_spellings(source, first, cell, "surrounding white space")
    names = _column_types(set(stripped)) if as_table else {name: name for name in stripped}
    spelled: dict[str, tuple[str, str]] = {}  # casefolded class -> (class, a cell as written)
    for name, cell in sorted(stripped.items()) if not distinct_case else ():
        if (first := spelled.setdefault(names[name].casefold(), (names[name], cell)))[0] != names[name]:
            raise _two_spellings(source, first[1], cell, "case")
    return {cell: names[cell.strip()] for cell in cells}


def _two_spellings(source: str, first: str, second: str, how: str) -> DataError:
    deliberate = " (or data.label_case=distinct if they are different classes)" if how == "case" else ""
    return DataError(f"{source}: labels {first!r} and {second!r} differ only in {how}; valid: one consistent spelling "
                     f"per class{deliberate}")


def _column_types(cells: set[str]) -> dict[str, str]:
    """``typed_labels``' reading of a column of stripped cells, as pandas types it."""
    def number(cell: str) -> int | float | None:
        if "_" in cell:  # Python reads 1_000 as a number; a table reader does not
            return None
        for kind in (int, float):
            try:
                return kind(cell)
            except ValueError:
                continue
        return None

    numbers = {cell: number(cell) for cell in cells}
    if cells and all(v is not None for v in numbers.values()):
        whole = all(math.isfinite(v) and float(v).is_integer() for v in numbers.values())
        return {cell: str(int(v)) if whole else str(float(v)) for cell, v in numbers.items()}
    if cells and cells <= BOOLEANS.keys():
        return {cell: BOOLEANS[cell] for cell in cells}
    return {cell: cell for cell in cells}


def label_sort_key(label: Any) -> tuple[int, Any]:
    """Numbers in numeric order, then strings alphabetically."""
    try:
        return (0, float(label))
    except (TypeError, ValueError):
        return (1, str(label))
