"""JSON from untrusted bytes, bounded: size, nesting depth and integer length.

``json.loads`` alone lets a request body reach Python's recursion limit (``[[[[...``, a
``RecursionError``) or build integers of thousands of digits (``ValueError`` past 4300 digits,
slow arithmetic below): both ended as HTTP 500 (issue 12 item 10). :func:`loads` turns every
such input into a :class:`~veritee.errors.MalformedError` naming what was read (codes
``json_too_deep``, ``integer_too_long``, else ``malformed``). Every JSON request body of the
service goes through it (:mod:`veritee.service.bodies`), and so do the YAML/JSON policy documents
(:func:`check_depth` after their own parser).
"""

from __future__ import annotations

import json
from typing import Any

from veritee.errors import MalformedError, OversizedError

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "check_depth", "loads", "loads_object"]

#: Deeper documents are refused: no protocol veritee speaks nests past a few levels.
MAX_DEPTH = 64
#: Longer integer literals are refused (a 64-bit value has at most 20 digits).
MAX_INT_DIGITS = 40


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError("integer literal too long")
    return int(text)


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python's extension, not RFC 8259


#: ``json.loads(text, parse_int=_int, parse_constant=_constant)`` without a decoder made per call.
_DECODE = json.JSONDecoder(parse_int=_int, parse_constant=_constant).decode


def _depth_ok(doc: Any, limit: int) -> bool:
    if type(doc) is dict and limit >= 1:  # most bodies: one object of plain values
        for value in doc.values():
            if isinstance(value, dict | list):
                break
        else:
            return True
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return False
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return True


def check_depth(doc: Any, *, what: str, max_depth: int = MAX_DEPTH) -> None:
    """MalformedError (``json_too_deep``) if ``doc`` nests lists/dicts deeper than ``max_depth``."""
    if not _depth_ok(doc, max_depth):
        raise MalformedError(f"{what} is nested deeper than {max_depth} levels", code="json_too_deep",
                             field=what)  # fmt: skip


def loads(raw: bytes | str, *, what: str, limit: int, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw`` (at most ``limit`` bytes) as JSON; MalformedError (``field=what``) else."""
    if len(raw) > limit:
        raise OversizedError(f"{what} is larger than {limit} bytes", field=what)
    try:
        if isinstance(raw, bytes | bytearray):  # read as json.loads reads them
            doc = _DECODE(raw.decode(json.detect_encoding(raw), "surrogatepass"))
        elif isinstance(raw, str) and not raw.startswith("\ufeff"):
            doc = _DECODE(raw)
        else:  # json.loads says what is wrong (a BOM, not text)
            doc = json.loads(raw, parse_int=_int, parse_constant=_constant)
    except RecursionError:
        raise MalformedError(
            f"{what} is nested too deeply", code="json_too_deep", field=what
        ) from None
    except (ValueError, UnicodeDecodeError) as e:
        if "integer literal" in str(e):
            raise MalformedError(f"{what}: an integer is too long", code="integer_too_long",
                                 field=what) from None  # fmt: skip
        raise MalformedError(f"{what} is not JSON", field=what) from None
    check_depth(doc, what=what, max_depth=max_depth)
    return doc


def loads_object(
    raw: bytes | str, *, what: str, limit: int, max_depth: int = MAX_DEPTH
) -> dict[str, Any]:
    """:func:`loads`, and the document must be a JSON object."""
    doc = loads(raw, what=what, limit=limit, max_depth=max_depth)
    if not isinstance(doc, dict):
        raise MalformedError(f"{what} must be a JSON object", field=what)
    return doc
