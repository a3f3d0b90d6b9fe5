"""Per-epoch log keys, ratcheted forward with HKDF and erased behind (forward secrecy).

The log secret ``S`` (32 random bytes) is the chain key of epoch 0. For each epoch ``e``::

    context      = SHA-256("veritee-log-v1" || lp(log_id) || lp(profile))
    record_key_e = HKDF-Expand-SHA256(chain_e, "veritee-log record" || context || u32(e), 32)
    chain_{e+1}  = HKDF-Expand-SHA256(chain_e, "veritee-log chain"  || context || u32(e+1), 32)

(RFC 5869; the chain key is already uniformly random, so Extract is skipped.) The workload keeps
only ``chain_e`` and ``record_key_e``; moving to ``e+1`` overwrites both. Whoever holds ``chain_e``
(the tenant, given ``S`` or a later chain key) can derive every key from ``e`` on, none before.

Limits of erasure in Python, stated honestly: keys are kept in ``bytearray`` objects that are
overwritten with zeros. HKDF in ``cryptography`` returns immutable ``bytes``; those are wiped
best-effort in CPython by writing over the object's buffer (:func:`wipe`). The AEAD object copies
its key into OpenSSL memory, which is freed (and cleansed by OpenSSL) when the object is dropped,
but the garbage collector decides when. Copies made by the OS (swap, core dumps) are out of reach;
a TEE with encrypted memory and no swap to the host is what makes this meaningful.
"""

from __future__ import annotations

import ctypes
import hashlib
import platform
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

__all__ = ["KEY_SIZE", "KeyRatchet", "log_context", "wipe"]

KEY_SIZE = 32
_CPYTHON = platform.python_implementation() == "CPython"
_BYTES_DATA_OFFSET = bytes.__basicsize__ - 1  # PyBytesObject.ob_sval


def wipe(buf: bytes | bytearray) -> None:
    """Overwrite a key buffer with zeros: in place for ``bytearray``; for ``bytes`` best effort
    on CPython only (immutable objects of length > 1 that no one else should hold)."""
    if isinstance(buf, bytearray):
        for i in range(len(buf)):
            buf[i] = 0
        return
    if _CPYTHON and len(buf) > 1:
        ctypes.memset(id(buf) + _BYTES_DATA_OFFSET, 0, len(buf))


def _lp(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def log_context(log_id: str, profile: str) -> bytes:
    """32 bytes binding the log id and the profile into every key derived for this log."""
    return hashlib.sha256(b"veritee-log-v1" + _lp(log_id.encode()) + _lp(profile.encode())).digest()


def _expand(key: bytes | bytearray, label: bytes, context: bytes, epoch: int) -> bytes:
    info = label + context + struct.pack(">I", epoch)
    return HKDFExpand(hashes.SHA256(), KEY_SIZE, info).derive(key)


class KeyRatchet:
    """The forward-only key chain of one log. Not thread-safe; the handler holds its lock."""

    def __init__(self, chain_key: bytes | bytearray, *, context: bytes, epoch: int = 0) -> None:
        if len(chain_key) != KEY_SIZE:
            raise ValueError(f"chain key must be {KEY_SIZE} bytes")
        self._context = context
        self._epoch = epoch
        self._chain = bytearray(chain_key)
        self._record = bytearray(KEY_SIZE)
        self._derive_record()

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def record_key(self) -> bytearray:
        """The current epoch's AEAD key (a live buffer: it is zeroed when the epoch advances)."""
        return self._record

    def chain_key(self) -> bytes:
        """A copy of the current chain key, for export to the tenant (sealed)."""
        return bytes(self._chain)

    def advance(self) -> None:
        """Move to the next epoch and erase this epoch's chain and record keys."""
        nxt = _expand(self._chain, b"veritee-log chain", self._context, self._epoch + 1)
        self._chain[:] = nxt
        wipe(nxt)
        self._epoch += 1
        self._derive_record()

    def advance_to(self, epoch: int) -> None:
        if epoch < self._epoch:
            raise ValueError(f"cannot go back from epoch {self._epoch} to {epoch}")
        while self._epoch < epoch:
            self.advance()

    def erase(self) -> None:
        wipe(self._chain)
        wipe(self._record)

    def _derive_record(self) -> None:
        key = _expand(self._chain, b"veritee-log record", self._context, self._epoch)
        self._record[:] = key
        wipe(key)
