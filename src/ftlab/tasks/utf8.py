"""Data files are UTF-8: reading a file's text, or checking a large one in a streaming pass, names the file and the
line of the first byte that is not (or, with ``data.encoding_errors=replace``, reads it as U+FFFD with a warning);
a JSON string escaping half a UTF-16 pair is named the same way."""

from __future__ import annotations

import codecs
import logging
import re
from pathlib import Path

from ftlab.core.assets import is_installed_file
from ftlab.core.checks import DataError

log = logging.getLogger(__name__)

LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # in a decoded str: half a UTF-16 pair, never valid text

UTF8_FIX = "save the file as UTF-8, or set data.encoding_errors=replace"


def read_text(path: str | Path, errors: str = "strict", fix: str = UTF8_FIX) -> str:
    """A file's text, which must be UTF-8 (a byte-order mark is dropped): a ``DataError`` names the file, the line of
    the first bad byte and ``fix``.

    ``errors="replace"`` (``data.encoding_errors``) reads such bytes as U+FFFD instead, with a warning naming the file.
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        _not_utf8(path, data.count(b"\n", 0, err.start) + 1, data[err.start], errors, fix)
        return data.decode("utf-8-sig", errors="replace")


def check_utf8(path: str | Path, errors: str = "strict", fix: str = UTF8_FIX) -> None:
    """``read_text``'s check without holding the file: one streaming pass, the same error or warning."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with open(path, "rb") as file:
        try:
            for block in iter(lambda: file.read(1 << 24), b""):
                decoder.decode(block)
                line += block.count(b"\n")
            decoder.decode(b"", final=True)  # the file may end inside a multi-byte character
        except UnicodeDecodeError as err:  # err.object: the bytes decoded, with any held over from the last block
            _not_utf8(path, line + err.object.count(b"\n", 0, err.start), err.object[err.start], errors, fix)


def _not_utf8(path: str | Path, line: int, byte: int, errors: str, fix: str) -> None:
    """The first byte that is not UTF-8: a warning with ``errors="replace"``, else a ``DataError``. The warning for a
    file of an installed package (the packaged BBC data has one) goes to the job's log only: its user cannot correct
    it, and the data config says so."""
    if errors == "replace":
        log.warning("%s:%d: not UTF-8; undecodable bytes read as U+FFFD (data.encoding_errors=replace)", path, line,
                    extra={"log_file_only": is_installed_file(path)})
        return
    raise DataError(f"{path}:{line}: not UTF-8 text (byte {byte:#04x}); {fix}") from None


def lone_surrogates(path: str, where: str, row: dict, errors: str, warn: bool) -> bool:
    """JSON may escape half a UTF-16 pair (``\\ud800``): the lone surrogate is no text a tokenizer, pandas or UTF-8
    takes. A ``DataError`` naming the record, or (``errors="replace"``) U+FFFD in its place; whether any was put."""
    replaced = False
    for key, value in row.items():
        if isinstance(value, str) and (bad := LONE_SURROGATE.search(value)):
            if errors != "replace":
                raise DataError(f"{path}: {where}: {key!r} has a lone surrogate (U+{ord(bad.group()):04X}), not valid "
                                "Unicode text; a \\uD800-\\uDBFF escape must be followed by its \\uDC00-\\uDFFF "
                                "pair")
            if warn and not replaced:
                log.warning("%s: lone surrogates in JSON strings read as U+FFFD (data.encoding_errors=replace)", path)
            row[key], replaced = LONE_SURROGATE.sub("\ufffd", value), True
    return replaced
