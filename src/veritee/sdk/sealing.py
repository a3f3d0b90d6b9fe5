"""Sealing: encrypt data so that only the same workload on the same platform can decrypt it.

The key is never stored. It is derived for every blob, HKDF-SHA-256 (RFC 5869) over the
platform's sealing key for the context ``b"veritee-seal-v1"`` (bound by the platform to its own
identity and to the workload's measurement), with a random per-blob salt; the blob is then
encrypted with AES-256-GCM (NIST SP 800-38D). A different measurement, a different platform
install, a flipped bit or a truncated blob all fail the same authenticated decryption.

Blob layout, version 1 (all of the header is authenticated as GCM associated data, followed by
the caller's ``aad``)::

    offset    size  field
    0         4     MAGIC          b"VTSB"
    4         1     VERSION        1
    5         1     NAME_LEN       n, 1..32
    6         n     PLATFORM       platform name, ASCII (e.g. "simulated", "sev-snp")
    6+n       32    SALT           random, HKDF salt
    38+n      12    NONCE          random, GCM nonce
    50+n      ...   CIPHERTEXT     ciphertext || 16-byte GCM tag

The HKDF ``info`` names the algorithm, the platform and the measurement, so a key derived for one
use never serves another. Every failure to unseal raises :class:`veritee.errors.SealingError`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veritee.errors import OversizedError, SealingError, UsageError
from veritee.platforms.base import Platform

__all__ = [
    "MAGIC",
    "MAX_PLAINTEXT",
    "SEAL_CONTEXT",
    "VERSION",
    "SealedHeader",
    "seal",
    "unseal",
]

MAGIC = b"VTSB"
VERSION = 1
SEAL_CONTEXT = b"veritee-seal-v1"

# Offsets and sizes of the header (see the module docstring).
OFF_MAGIC = 0
OFF_VERSION = 4
OFF_NAME_LEN = 5
OFF_NAME = 6
SALT_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
MAX_NAME_LEN = 32
KEY_SIZE = 32
#: Largest plaintext :func:`seal` accepts (AES-GCM in ``cryptography`` stops at 2**31 - 1).
MAX_PLAINTEXT = 256 * 1024 * 1024

_NAME_RE = re.compile(rb"[a-z0-9][a-z0-9._-]{0,31}")


@dataclass(frozen=True)
class SealedHeader:
    """The parsed, not yet authenticated, header of a sealed blob (layout in the module doc)."""

    version: int
    platform: str
    salt: bytes
    nonce: bytes
    #: The raw header bytes, authenticated as associated data.
    header: bytes

    @classmethod
    def from_bytes(cls, blob: bytes) -> SealedHeader:
        """Parse the header; raises :class:`SealingError` naming the field that is wrong."""
        if len(blob) < OFF_NAME:
            raise SealingError(
                f"sealed blob truncated: {len(blob)} bytes, header needs at least {OFF_NAME}",
                code="sealed_blob_truncated",
            )
        if blob[OFF_MAGIC:OFF_VERSION] != MAGIC:
            raise SealingError("not a sealed blob (bad magic at offset 0)", code="sealed_blob_invalid")
        version = blob[OFF_VERSION]
        if version != VERSION:
            raise SealingError(
                f"unsupported sealed blob version {version} at offset {OFF_VERSION} "
                f"(this build reads version {VERSION})",
                code="sealed_blob_version",
            )
        n = blob[OFF_NAME_LEN]
        if not 1 <= n <= MAX_NAME_LEN:
            raise SealingError(
                f"sealed blob platform name length {n} at offset {OFF_NAME_LEN} out of range",
                code="sealed_blob_invalid",
            )
        end = OFF_NAME + n + SALT_SIZE + NONCE_SIZE
        if len(blob) < end + TAG_SIZE:
            raise SealingError(
                f"sealed blob truncated: {len(blob)} bytes, needs at least {end + TAG_SIZE}",
                code="sealed_blob_truncated",
            )
        name = blob[OFF_NAME : OFF_NAME + n]
        if _NAME_RE.fullmatch(name) is None:
            raise SealingError(
                f"sealed blob platform name at offset {OFF_NAME} is not a platform name",
                code="sealed_blob_invalid",
            )
        salt_at = OFF_NAME + n
        return cls(
            version=version,
            platform=name.decode("ascii"),
            salt=blob[salt_at : salt_at + SALT_SIZE],
            nonce=blob[salt_at + SALT_SIZE : end],
            header=blob[:end],
        )


def _platform_name(platform: Platform) -> bytes:
    name = platform.name.encode("ascii", "replace")
    if _NAME_RE.fullmatch(name) is None:
        raise UsageError(f"platform name {platform.name!r} cannot be sealed to", code="usage")
    return name


def _derive_key(platform: Platform, name: bytes, salt: bytes) -> AESGCM:
    root = platform.sealing_key(SEAL_CONTEXT)
    if not isinstance(root, bytes) or len(root) != KEY_SIZE:
        raise UsageError(
            f"platform {platform.name!r} returned a sealing key that is not {KEY_SIZE} bytes"
        )
    info = b"veritee-seal-v1|aes-256-gcm|" + name + b"|" + platform.measurement.lower().encode()
    key = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(root)
    return AESGCM(key)


def seal(platform: Platform, data: bytes, *, aad: bytes = b"") -> bytes:
    """Encrypt ``data`` so that only ``platform`` running the same measurement can unseal it.

    ``aad`` is authenticated but not stored: :func:`unseal` must be given the same value
    (use it to bind the blob to its purpose, e.g. ``b"keystore"``).
    Raises :class:`OversizedError` above :data:`MAX_PLAINTEXT` bytes.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UsageError("seal() takes bytes")
    if len(data) > MAX_PLAINTEXT:
        raise OversizedError(
            f"cannot seal {len(data)} bytes (limit {MAX_PLAINTEXT})", field="data"
        )
    name = _platform_name(platform)
    salt = os.urandom(SALT_SIZE)
    nonce = os.urandom(NONCE_SIZE)
    header = MAGIC + bytes([VERSION, len(name)]) + name + salt + nonce
    aead = _derive_key(platform, name, salt)
    return header + aead.encrypt(nonce, bytes(data), header + bytes(aad))


def unseal(platform: Platform, blob: bytes, *, aad: bytes = b"") -> bytes:
    """Decrypt a blob made by :func:`seal` on this platform with this measurement.

    Raises :class:`SealingError` (and nothing else) if the blob is not bytes, is malformed,
    truncated or tampered, was sealed on another platform or by another measurement, or was
    sealed with another ``aad``.
    """
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise SealingError("a sealed blob must be bytes", code="sealed_blob_invalid")
    blob = bytes(blob)
    if len(blob) > MAX_PLAINTEXT + 1024:
        raise SealingError(
            f"sealed blob of {len(blob)} bytes is larger than any blob seal() makes",
            code="sealed_blob_invalid",
        )
    hdr = SealedHeader.from_bytes(blob)
    name = _platform_name(platform)
    if hdr.platform.encode("ascii") != name:
        raise SealingError(
            f"blob was sealed on platform {hdr.platform!r}, this is {platform.name!r}",
            code="sealed_other_platform",
        )
    aead = _derive_key(platform, name, hdr.salt)
    try:
        return aead.decrypt(hdr.nonce, blob[len(hdr.header) :], hdr.header + bytes(aad))
    except InvalidTag:
        raise SealingError(
            "sealed blob does not unseal here: it was sealed by another measurement or "
            "platform install, with other associated data, or it was tampered with",
            code="unseal_failed",
        ) from None
