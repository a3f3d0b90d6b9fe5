"""JSON from untrusted bytes, bounded: size, nesting depth and integer length.

``json.loads`` alone lets a request body reach Python's recursion limit (``[[[[...``, a
``RecursionError``) or build integers of thousands of digits (``ValueError`` past 4300 digits,
slow arithmetic below): both ended as HTTP 500 (issue 12 item 10). :func:`loads` turns every
such input into a :class:`~veritee.errors.MalformedError` naming what was read.
"""

from __future__ import annotations

import json
from typing import Any

from veritee.errors import MalformedError, OversizedError

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "loads", "loads_object"]

#: Deeper documents are refused: no protocol veritee speaks nests past a few levels.
MAX_DEPTH = 64
#: Longer integer literals are refused (a 64-bit value has at most 20 digits).
MAX_INT_DIGITS = 40


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError("integer literal too long")
    return int(text)


def _depth_ok(doc: Any, limit: int) -> bool:
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


def loads(raw: bytes | str, *, what: str, limit: int, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw`` (at most ``limit`` bytes) as JSON; MalformedError (``field=what``) else."""
    if len(raw) > limit:
        raise OversizedError(f"{what} is larger than {limit} bytes", field=what)
    try:
        doc = json.loads(raw, parse_int=_int)
    except RecursionError:
        raise MalformedError(f"{what} is nested too deeply", field=what) from None
    except (ValueError, UnicodeDecodeError) as e:
        detail = "an integer is too long" if "integer literal" in str(e) else "not JSON"
        raise MalformedError(f"{what} is {detail}" if detail == "not JSON" else f"{what}: {detail}",
                             field=what) from None  # fmt: skip
    if not _depth_ok(doc, max_depth):
        raise MalformedError(f"{what} is nested deeper than {max_depth} levels", field=what)
    return doc


def loads_object(raw: bytes | str, *, what: str, limit: int, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """:func:`loads`, and the document must be a JSON object."""
    doc = loads(raw, what=what, limit=limit, max_depth=max_depth)
    if not isinstance(doc, dict):
        raise MalformedError(f"{what} must be a JSON object", field=what)
    return doc
