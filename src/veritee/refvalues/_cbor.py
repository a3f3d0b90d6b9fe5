"""Bounded CBOR decoding for untrusted CoRIM input.

:func:`scan` walks the encoded item without recursion and without allocating anything the input
asks for, so a hostile document cannot exhaust the stack or memory: it refuses nesting deeper than
``max_depth``, more than ``max_items`` data items, a length that runs past the end (truncated),
bytes after the item, reserved additional-information values, a stray ``break``, indefinite
strings made of chunks of another type, and a map that holds the same key twice (RFC 8949 §5.6:
a map with duplicate keys is not valid; Go's fxamacker/cbor, which Veraison uses, refuses them
too). Only then does :func:`loads` hand the bytes to ``cbor2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cbor2

__all__ = ["CborError", "loads", "scan"]

MAX_DEPTH = 32
MAX_ITEMS = 200_000


class CborError(Exception):
    """The bytes are not one well-formed CBOR item within the limits. ``code`` is a reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Frame:
    remaining: int | None  # items still expected; None: indefinite (ends with break)
    is_map: bool
    string_major: int | None = None  # indefinite byte/text string: the chunks' major type
    index: int = 0
    key_start: int = 0
    keys: set[bytes] = field(default_factory=set)


def _argument(data: bytes, pos: int, ai: int) -> tuple[int, int]:
    if ai < 24:
        return ai, pos
    size = {24: 1, 25: 2, 26: 4, 27: 8}.get(ai)
    if size is None:
        raise CborError(
            "corim_malformed", f"reserved additional information {ai} at offset {pos - 1}"
        )
    if pos + size > len(data):
        raise CborError("truncated", f"CBOR argument runs past the end at offset {pos}")
    return int.from_bytes(data[pos : pos + size], "big"), pos + size


def scan(data: bytes, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> None:  # noqa: C901 - one walk over the grammar, case by case
    """Check that ``data`` is exactly one well-formed CBOR item within the limits, or raise."""
    n = len(data)
    if n == 0:
        raise CborError("empty", "no CBOR data")
    stack: list[_Frame] = []
    pos = 0
    items = 0
    while True:
        if pos >= n:
            raise CborError("truncated", f"CBOR ends inside an item at offset {pos}")
        parent = stack[-1] if stack else None
        if parent is not None and parent.is_map and parent.index % 2 == 0:
            parent.key_start = pos
        head = pos
        ib = data[pos]
        pos += 1
        major, ai = ib >> 5, ib & 0x1F
        items += 1
        if items > max_items:
            raise CborError("oversized", f"more than {max_items} CBOR data items")
        complete = True
        if ib == 0xFF:  # break
            if parent is None or parent.remaining is not None:
                raise CborError("corim_malformed", f"unexpected CBOR break at offset {head}")
            if parent.is_map and parent.index % 2:
                raise CborError(
                    "corim_malformed", f"map ends after a key without value at offset {head}"
                )
            stack.pop()
        elif (
            parent is not None
            and parent.string_major is not None
            and (major != parent.string_major or ai == 31)
        ):
            raise CborError(
                "corim_malformed", f"bad chunk in an indefinite-length string at offset {head}"
            )
        elif major in (0, 1):
            _, pos = _argument(data, pos, ai)
        elif major in (2, 3):
            if ai == 31:
                stack.append(_Frame(None, False, string_major=major))
                complete = False
            else:
                length, pos = _argument(data, pos, ai)
                if length > n - pos:
                    raise CborError(
                        "truncated", f"string of {length} bytes runs past the end at offset {head}"
                    )
                pos += length
        elif major in (4, 5):
            if ai == 31:
                count: int | None = None
            else:
                count, pos = _argument(data, pos, ai)
                count = count * 2 if major == 5 else count
                if count > n - pos:
                    raise CborError(
                        "truncated",
                        f"container of {count} items runs past the end at offset {head}",
                    )
            if count != 0:
                stack.append(_Frame(count, major == 5))
                complete = False
        elif major == 6:
            _, pos = _argument(data, pos, ai)
            stack.append(_Frame(1, False))
            complete = False
        else:  # major 7
            if ai == 24:
                if pos >= n:
                    raise CborError("truncated", "simple value runs past the end")
                if data[pos] < 32:
                    raise CborError(
                        "corim_malformed", f"badly encoded simple value at offset {head}"
                    )
                pos += 1
            elif ai in (25, 26, 27):
                _, pos = _argument(data, pos, ai)
            elif ai in (28, 29, 30, 31):
                raise CborError(
                    "corim_malformed", f"reserved simple/float encoding at offset {head}"
                )
        if len(stack) > max_depth:
            raise CborError("corim_too_deep", f"CBOR nested deeper than {max_depth} levels")
        # Propagate completion upwards: a finished item advances its parent, which may finish too.
        while complete:
            if not stack:
                if pos != n:
                    raise CborError("trailing_bytes", f"{n - pos} bytes follow the CBOR item")
                return
            top = stack[-1]
            if top.is_map and top.index % 2 == 0:
                key = data[top.key_start : pos]
                if key in top.keys:
                    raise CborError(
                        "corim_malformed", f"map has a duplicate key at offset {top.key_start}"
                    )
                top.keys.add(key)
            top.index += 1
            if top.remaining is not None and top.index == top.remaining:
                stack.pop()
                continue
            complete = False


def loads(data: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """:func:`scan`, then decode with cbor2 (its semantic tags: 1 → datetime, 37 → UUID)."""
    scan(data, max_depth=max_depth)
    try:
        return cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError, OverflowError) as e:
        raise CborError("corim_malformed", f"CBOR does not decode: {e}") from None
