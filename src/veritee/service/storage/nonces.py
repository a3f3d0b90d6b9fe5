"""Challenge nonces that need no database write to issue.

A nonce is 32 bytes::

    random (8) | issued at, Unix milliseconds (6, big-endian) | lifetime, seconds (2) | tag (16)

where ``tag`` is the first 16 bytes of HMAC-SHA256(key, "veritee-nonce-v1" || len(purpose) ||
purpose || the first 16 bytes). Issuing one is a random draw and a MAC; no row is written. A
nonce is checked in two steps:

1. here, without the database: the tag must verify for this purpose (else ``nonce_unknown``)
   and the lifetime must not have ended (else ``nonce_expired``);
2. in the consuming transaction, by :meth:`veritee.service.storage.tx.Tx.consume_nonce`: the
   nonce's SHA-256 is inserted into ``nonces`` and a row already there means ``nonce_reused``.
   The primary key makes this single use across threads, processes and replicas; the row is
   kept until the nonce's lifetime has ended and then purged.

The whole nonce is unpredictable without the key (the tag), so evidence cannot be made for it
in advance. Every process and replica of a domain derives the same key from the domain's keys
(:attr:`veritee.domain.Domain.nonce_key`), so a nonce issued by one is accepted by another.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime, timedelta

from veritee.errors import NonceError, UsageError

__all__ = ["MAX_NONCE_TTL", "NONCE_BYTES", "NonceMinter"]

NONCE_BYTES = 32
MAX_NONCE_TTL = timedelta(hours=1)
_LABEL = b"veritee-nonce-v1"
_TAG_BYTES = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _aware(name: str, moment: datetime) -> datetime:
    """``moment`` if it is a timezone-aware datetime, else UsageError (also used by :mod:`.tx`)."""
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise UsageError(f"{name} must be a timezone-aware datetime")
    return moment


def _millis(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


class NonceMinter:
    """Issues and checks nonces under one 32-byte key (see the module docstring)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) < 32:
            raise UsageError("the nonce key must be at least 32 bytes")
        self._key = key

    def _tag(self, purpose: str, head: bytes) -> bytes:
        p = purpose.encode()
        return hmac.digest(self._key, _LABEL + bytes([len(p)]) + p + head, "sha256")[:_TAG_BYTES]

    def issue(self, *, now: datetime, ttl: timedelta, purpose: str = "attest") -> bytes:
        """A fresh nonce for ``purpose``, valid from ``now`` for ``ttl`` (whole seconds)."""
        _aware("now", now)
        if not isinstance(purpose, str) or not purpose or len(purpose) > 32:
            raise UsageError("nonce purpose must be a non-empty string of at most 32 characters")
        seconds = int(ttl.total_seconds())
        if seconds < 1 or ttl > MAX_NONCE_TTL:
            raise UsageError(f"nonce ttl must be at least 1 second and at most {MAX_NONCE_TTL}")
        head = secrets.token_bytes(8) + _millis(now).to_bytes(6, "big") + seconds.to_bytes(2, "big")
        return head + self._tag(purpose, head)

    def check(self, nonce: bytes, *, now: datetime, purpose: str) -> tuple[datetime, datetime]:
        """``(issued_at, expires_at)`` of a nonce that is ours and still alive, else NonceError.

        Raises NonceError ``nonce_unknown`` (not issued by this domain for this purpose, or not
        32 bytes) or ``nonce_expired``. Whether it was used already is the database's part.
        """
        _aware("now", now)
        if not isinstance(nonce, bytes | bytearray) or len(nonce) != NONCE_BYTES:
            raise NonceError(f"nonce must be {NONCE_BYTES} bytes", code="nonce_unknown")
        head = bytes(nonce[:16])
        if not hmac.compare_digest(self._tag(purpose, head), bytes(nonce[16:])):
            raise NonceError(
                "nonce unknown: not issued by this domain for this purpose", code="nonce_unknown"
            )
        issued = _EPOCH + timedelta(milliseconds=int.from_bytes(head[8:14], "big"))
        expires = issued + timedelta(seconds=int.from_bytes(head[14:16], "big"))
        if not now < expires:
            raise NonceError("nonce expired", code="nonce_expired")
        return issued, expires
