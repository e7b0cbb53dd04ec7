"""What a prediction request may be, checked before it reaches the model: one line per problem, with its status.

A body is ``{"text": "..."}`` or ``{"texts": ["...", ...]}``. Not JSON: 400. Not that shape, a wrong type, an empty
text or list, a text that is not valid Unicode (a lone surrogate from a JSON ``\\ud800`` escape): 422. More texts
than ``max_texts``, a text longer than ``max_chars`` characters, or a body larger than what those allow: 413.
(Characters, not tokens: the HTTP process does not load the tokenizer; the model still truncates each text to
``--max-length`` tokens, as ``ftlab.predict`` does.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SHAPE = 'send {"text": "..."} or {"texts": ["...", ...]}'


@dataclass(frozen=True)
class Limits:
    """Bounds on one request."""

    max_texts: int = 64
    max_chars: int = 20_000

    @property
    def max_body_bytes(self) -> int:
        """The largest body that can hold ``max_texts`` texts of ``max_chars`` characters (4 bytes each in UTF-8, or
        6 as JSON escapes), with room for the JSON around them."""
        return self.max_texts * (self.max_chars * 6 + 16) + 1024


class BadRequest(ValueError):
    """A request that is refused: an HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def body_too_large(size: int, limits: Limits) -> BadRequest:
    """The refusal of a body of (at least) ``size`` bytes."""
    return BadRequest(413, f"body of {size}+ bytes is over {limits.max_body_bytes} (what --max-texts "
                           f"{limits.max_texts} texts of --max-chars {limits.max_chars} characters need)")


def parse_body(body: bytes, limits: Limits) -> Any:
    """The JSON value of a request body."""
    if len(body) > limits.max_body_bytes:
        raise body_too_large(len(body), limits)
    if not body.strip():
        raise BadRequest(400, f"empty body; {SHAPE}")
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise BadRequest(400, f"body is not UTF-8 JSON; {SHAPE}") from None
    except json.JSONDecodeError as err:
        raise BadRequest(400, f"body is not JSON ({err.msg} at line {err.lineno} column {err.colno}); {SHAPE}") \
            from None


def request_texts(payload: Any, limits: Limits) -> tuple[list[str], bool]:
    """The texts of a parsed request and whether it asked for one (``text``) rather than a list (``texts``)."""
    if not isinstance(payload, dict):
        raise BadRequest(422, f"the body is a JSON {_kind(payload)}, not an object; {SHAPE}")
    keys = sorted(payload)
    if keys not in (["text"], ["texts"]):
        raise BadRequest(422, f"the object has keys {keys}; {SHAPE} (exactly one of the two keys)")
    single = keys == ["text"]
    texts = [payload["text"]] if single else payload["texts"]
    if not isinstance(texts, list):
        raise BadRequest(422, f'"texts" is a JSON {_kind(texts)}, not a list of strings; {SHAPE}')
    if not texts:
        raise BadRequest(422, f'"texts" is an empty list; give 1 to {limits.max_texts} texts')
    if len(texts) > limits.max_texts:
        raise BadRequest(413, f'"texts" has {len(texts)} texts; at most {limits.max_texts} per request (--max-texts)')
    for i, text in enumerate(texts):
        where = '"text"' if single else f'"texts"[{i}]'
        if not isinstance(text, str):
            raise BadRequest(422, f"{where} is a JSON {_kind(text)}, not a string")
        if not text.strip():
            raise BadRequest(422, f"{where} is empty; give a text with at least one non-space character")
        if len(text) > limits.max_chars:
            raise BadRequest(413, f"{where} has {len(text)} characters; at most {limits.max_chars} (--max-chars)")
        if (bad := not_unicode(text)) is not None:
            raise BadRequest(422, f"{where} {bad}")
    return texts, single


def not_unicode(text: str) -> str | None:
    """Why ``text`` is not valid Unicode text, or None. JSON's ``\\ud800`` escapes decode to lone UTF-16 surrogates,
    which no tokenizer takes and UTF-8 cannot encode: refused, or the batch that holds the text would fail."""
    try:
        text.encode("utf-8", errors="strict")
    except UnicodeEncodeError as err:
        return (f"has a lone surrogate (U+{ord(text[err.start]):04X}) at character {err.start}: not valid Unicode "
                "text; send UTF-8 text (a \\uD800-\\uDBFF escape must be followed by its \\uDC00-\\uDFFF pair)")
    return None


def _kind(value: Any) -> str:
    """A JSON value's type name as a client sees it."""
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)
