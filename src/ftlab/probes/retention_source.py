"""The held-out text of the retention probe (``retention.source``): Python's own documentation, or a text or table
file of the user's; read into passages and checked before anything heavy loads."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from ftlab.core.assets import resolve_path
from ftlab.core.checks import Checker, DataError, is_int
from ftlab.tasks.specs import TEXT_SUFFIXES
from ftlab.tasks.tables import TABULAR_SUFFIXES, read_table
from ftlab.tasks.utf8 import read_text

log = logging.getLogger(__name__)

OPTIONS = ("source", "text_field", "max_samples")
NAMED_SOURCES = ("python_docs",)
MIN_PASSAGES = 4  # the debiased CKA estimate needs n >= 4; fewer passages would say little anyway
MIN_WORDS = 20  # a python_docs paragraph shorter than this is a heading, a signature or a list item, not prose
BEFORE_FILE = "retention_before.pt"
PARAGRAPH_BREAK = r"\n[ \t]*\n"  # a blank line; the next paragraph's indentation stays (it marks code in the docs)
VALID_SOURCES = (f"null (off), {', '.join(NAMED_SOURCES)}, or a text file ({', '.join(TEXT_SUFFIXES)}: one passage "
                 f"per blank-line-separated paragraph) or table ({', '.join(TABULAR_SUFFIXES)}: retention.text_field)")


def paragraphs(text: str) -> list[str]:
    """Blank-line-separated paragraphs, each with its whitespace (line wrapping) folded to single spaces."""
    return [" ".join(p.split()) for p in re.split(PARAGRAPH_BREAK, text) if p.strip()]


def python_docs_passages() -> list[str]:
    """The prose paragraphs of Python's own documentation (``pydoc_data.topics``, in every Python, offline): at least
    ``MIN_WORDS`` words, ending a sentence, not indented (code, grammar) and without ``>>>`` (examples), by topic."""
    from pydoc_data.topics import topics

    keep = []
    for name in sorted(topics):
        for raw in re.split(PARAGRAPH_BREAK, topics[name]):
            text = " ".join(raw.split())
            indented = any(line[:1].isspace() for line in raw.strip("\n").splitlines())
            if not indented and ">>>" not in text and text.endswith(".") and len(text.split()) >= MIN_WORDS:
                keep.append(text)
    return list(dict.fromkeys(keep))  # topics share paragraphs: each once


def source_label(source: str) -> str:
    """``python_docs (Python 3.11)``: the documentation changes with Python's version; a file is named as given."""
    return f"python_docs (Python {sys.version_info.major}.{sys.version_info.minor})" if source == "python_docs" \
        else str(source)


def read_passages(source: str, text_field: str = "text", max_samples: int | None = None) -> list[str]:
    """The retention passages of ``source``, at most ``max_samples`` of them spread evenly over it (deterministic;
    python_docs is ordered by topic, so the selection covers the topics)."""
    if source == "python_docs":
        passages = python_docs_passages()
    else:
        path = Path(resolve_path(str(source)))
        if path.suffix.lower() in TEXT_SUFFIXES:
            passages = paragraphs(read_text(path, fix="save the file as UTF-8"))
        else:
            frame = read_table(str(path), reads=(text_field,))
            if text_field not in frame.columns:
                raise DataError(f"{path}: no column {text_field!r} (retention.text_field); columns there: "
                                f"{', '.join(map(str, frame.columns))}")
            passages = [" ".join(str(t).split()) for t in frame[text_field].dropna()]
            passages = [p for p in passages if p]
    n = len(passages) if max_samples is None else min(max_samples, len(passages))
    return [passages[i * len(passages) // n] for i in range(n)]


def check_retention(c: Checker) -> None:
    """``retention``: known options, a source that exists and yields at least ``MIN_PASSAGES`` passages, and as many
    ``max_samples``."""
    c.unknown_keys("retention", OPTIONS, "retention")
    source = c.get("retention.source")
    if source is None:
        return
    limit = c.get("retention.max_samples")
    if limit is not None and (not is_int(limit) or limit < MIN_PASSAGES):
        c.fail("retention.max_samples", f"must be an integer >= {MIN_PASSAGES}, or null (every passage)")
    if not isinstance(c.get("retention.text_field"), str):
        c.fail("retention.text_field", "must be a column name")
    if source in NAMED_SOURCES:
        return
    try:
        path = Path(resolve_path(str(source)))
    except FileNotFoundError as err:  # pkg:// of a package that is not installed
        c.fail("retention.source", f"{err}; valid: {VALID_SOURCES}")
        return
    if path.suffix.lower() not in (*TEXT_SUFFIXES, *TABULAR_SUFFIXES):
        c.fail("retention.source", f"unknown source; valid: {VALID_SOURCES}")
    elif not path.is_file():
        c.fail("retention.source", f"no such file: {path}; valid: {VALID_SOURCES}")
    else:
        try:
            found = len(read_passages(str(source), str(c.get("retention.text_field"))))
            if found < MIN_PASSAGES:
                c.fail("retention.source", f"{path} holds {found} passage(s) (non-blank paragraphs or rows); at least "
                                           f"{MIN_PASSAGES} are needed")
        except DataError as err:
            c.problems.append(f"retention.source: {err}")
