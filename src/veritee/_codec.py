"""The encodings veritee writes in more than one place, each defined once.

- :func:`canonical_json`: the JSON text that is hashed or signed (policy digests and envelopes,
  the audit chain, clean-room result signatures): sorted keys, no whitespace, no NaN or
  infinities. ASCII-only (``\\uXXXX`` escapes) unless a format fixed UTF-8 before this module
  existed (the clean room's signed results): those bytes are stored data and do not change.
- :func:`b64url` / :func:`b64url_decode`: unpadded base64url (RFC 7515 §2), as JOSE, the KBS
  protocol and its cookies use it. The decoder refuses any character outside the alphabet
  instead of skipping it (Python's ``urlsafe_b64decode`` skips), padding, and a last character
  whose unused bits are not zero (RFC 4648 §3.5), so one value has exactly one spelling.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from veritee.errors import MalformedError

__all__ = ["b64url", "b64url_bytes", "b64url_decode", "canonical_json"]

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


# The encoders ``json.dumps`` would build for these options on every call (it makes a new
# ``JSONEncoder`` unless every option is the default). An encoder keeps only its options: each
# ``encode`` makes its own C encoder and cycle markers, so one instance serves every thread.
_CANONICAL_ASCII = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)
_CANONICAL_UTF8 = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value: Any, *, ascii_only: bool = True) -> str:
    """Sorted keys, separators ``,`` and ``:``, NaN refused (``ValueError``); ASCII escapes
    unless ``ascii_only=False`` (UTF-8 text, for the clean room's result signatures)."""
    return (_CANONICAL_ASCII if ascii_only else _CANONICAL_UTF8).encode(value)


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url_bytes(data: bytes) -> bytes:
    """Unpadded base64url of ``data`` as ASCII bytes (``base64.urlsafe_b64encode`` without its
    layers)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def b64url(data: bytes) -> str:
    """Unpadded base64url text of ``data``."""
    return b64url_bytes(data).decode("ascii")


def b64url_decode(text: Any, field: str, *, max_chars: int | None = None) -> bytes:
    """The bytes of unpadded base64url ``text``; a non-string, a character outside the
    alphabet, padding, an impossible length, non-zero unused bits in the last character or
    more than ``max_chars`` characters is a :class:`~veritee.errors.MalformedError` naming
    ``field``."""
    if not isinstance(text, str):
        raise MalformedError(f"{field}: expected a base64url string", field=field)
    if max_chars is not None and len(text) > max_chars:
        raise MalformedError(
            f"{field}: base64url text longer than {max_chars} characters", field=field
        )
    if _B64URL.fullmatch(text) is None or len(text) % 4 == 1:
        raise MalformedError(f"{field} is not base64url without padding", field=field)
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedError(f"{field} is not base64url without padding", field=field) from None
    if len(text) % 4 and b64url(data) != text:
        raise MalformedError(f"{field}: non-canonical base64url (unused bits set)", field=field)
    return data
