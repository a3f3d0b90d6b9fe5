"""A bounds-checked little-endian reader for binary evidence structures.

Every read names the field it reads, so a truncated input raises a
:class:`~veritee.errors.MalformedError` that says which field and which offset ran out.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import struct
from typing import Any

from veritee.errors import MalformedError

__all__ = ["Reader", "base64_any", "json_object"]


def base64_any(text: Any, field: str) -> builtins.bytes:
    """Base64 text in either alphabet (standard or URL), padding optional; else MalformedError."""
    if not isinstance(text, str):
        raise MalformedError("expected base64 text", field=field)
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedError("not valid base64", field=field) from None


def json_object(data: builtins.bytes, limit: int) -> dict[str, Any]:
    """``data`` as a JSON object of at most ``limit`` bytes, else MalformedError (``document``)."""
    if len(data) > limit:
        raise MalformedError(f"document is larger than {limit} bytes", field="document")
    try:
        doc = json.loads(data)
    except RecursionError:
        raise MalformedError("the document is nested too deeply", field="document") from None
    except (ValueError, UnicodeDecodeError):
        raise MalformedError("not a JSON document", field="document") from None
    if not isinstance(doc, dict):
        raise MalformedError("the document must be a JSON object", field="document")
    return doc


class Reader:
    """Reads fixed-size fields from ``data``, starting at ``offset``."""

    __slots__ = ("_data", "_end", "offset")

    def __init__(self, data: bytes, offset: int = 0, end: int | None = None) -> None:
        self._data = memoryview(data)
        self.offset = offset
        self._end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self._end - self.offset

    def bytes(self, n: int, field: str) -> bytes:
        if n < 0 or self.offset + n > self._end:
            raise MalformedError(
                f"truncated: {field} needs {n} bytes, {max(self.remaining, 0)} left",
                field=field,
                offset=self.offset,
            )
        out = self._data[self.offset : self.offset + n].tobytes()
        self.offset += n
        return out

    def skip(self, n: int, field: str) -> None:
        self.bytes(n, field)

    def u8(self, field: str) -> int:
        return self.bytes(1, field)[0]

    def u16(self, field: str) -> int:
        return int(struct.unpack("<H", self.bytes(2, field))[0])

    def u32(self, field: str) -> int:
        return int(struct.unpack("<I", self.bytes(4, field))[0])

    def u64(self, field: str) -> int:
        return int(struct.unpack("<Q", self.bytes(8, field))[0])

    def rest(self) -> builtins.bytes:
        return self.bytes(self.remaining, "rest")
