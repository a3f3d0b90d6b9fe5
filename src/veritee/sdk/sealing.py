"""Sealing: encrypt data so that only the same workload, in the same profile, can decrypt it.

The key is never stored. It is derived for every blob, HKDF-SHA-256 (RFC 5869) over the
platform's sealing key for the context ``b"veritee-seal-v2"`` (bound by the platform to its own
instance, the measurement, the debug state and the profile: :mod:`veritee.platforms.base`), with
a random per-blob salt and an ``info`` that names the platform, the sealing mode, the
measurement (platform-bound mode only), the profile, the debug state and the blob's **purpose**;
the blob is then encrypted with AES-256-GCM (NIST SP 800-38D). The header and the caller's
**context** (associated data, not stored) are authenticated. A different measurement, profile,
debug state, platform install, purpose or context, a flipped bit or a truncated blob all fail.
In domain-released mode the sealing key is the key broker's, released per workload name and
profile (:mod:`veritee.sdk.domain_sealing`), and the measurement is not bound: the blob opens
for every measurement the domain's policy admits under that name and profile.

Purposes keep blobs of one use from being opened as another: applications seal under their
own purpose names (``app`` by default, see :class:`veritee.Trust`); names starting with
``veritee`` are reserved for the SDK's own keys (:data:`PURPOSE_KEYSTORE`,
:data:`PURPOSE_LOG_PENDING`), which ``Trust.unseal`` therefore never opens.

Blob layout, version 2 (all of it up to the ciphertext is authenticated as GCM associated data,
followed by the caller's context)::

    offset     size  field
    0          4     MAGIC          b"VTSB"
    4          1     VERSION        2
    5          1     PROFILE        0 development, 1 testing, 2 staging, 3 production
    6          1     FLAGS          bit 0 DEBUG, bit 1 DOMAIN_RELEASED (sealing mode); others 0
    7          1     NAME_LEN       n, 1..32
    8          n     PLATFORM       platform name, ASCII (e.g. "simulated", "sev-snp")
    8+n        1     PURPOSE_LEN    m, 1..64
    9+n        m     PURPOSE        purpose name, ASCII [a-z0-9][a-z0-9._-]*
    9+n+m      32    SALT           random, HKDF salt
    41+n+m     12    NONCE          random, GCM nonce
    53+n+m     ...   CIPHERTEXT     ciphertext || 16-byte GCM tag

Version 1 blobs (``MAGIC | 1 | NAME_LEN | PLATFORM | SALT | NONCE | CIPHERTEXT``, bound to the
measurement only, with the associated data given at sealing) are still opened by
:func:`unseal` for the purpose they can have had (see :func:`_legacy_aad`), on platforms that
can still derive the version-1 key (the simulated platform); :func:`seal` writes version 2 only.

Every failure to unseal raises :class:`veritee.errors.SealingError`.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veritee.errors import OversizedError, SealingError, UsageError
from veritee.platforms.base import Platform, SealingMode
from veritee.profiles import Profile

__all__ = [
    "MAGIC",
    "MAX_CONTEXT",
    "MAX_PLAINTEXT",
    "PURPOSE_APP",
    "PURPOSE_KEYSTORE",
    "PURPOSE_LOG_PENDING",
    "SEAL_CONTEXT",
    "VERSION",
    "SealedHeader",
    "Sealer",
    "check_app_purpose",
    "seal",
    "unseal",
]

MAGIC = b"VTSB"
VERSION = 2
LEGACY_VERSION = 1
SEAL_CONTEXT = b"veritee-seal-v2"
LEGACY_SEAL_CONTEXT = b"veritee-seal-v1"

#: The purpose of ``Trust.seal`` when the application names none.
PURPOSE_APP = "app"
#: The workload's key store (:mod:`veritee.sdk.keystore`).
PURPOSE_KEYSTORE = "veritee.keystore"
#: The key of a confidential log's pending buffer (:mod:`veritee.logs.handler`).
PURPOSE_LOG_PENDING = "veritee.log-pending"
_RESERVED_PREFIX = "veritee"
#: The associated data the key store was sealed with in version 1.
LEGACY_KEYSTORE_AAD = b"veritee-keystore-v1"

PROFILE_CODES: dict[Profile, int] = {
    Profile.DEVELOPMENT: 0,
    Profile.TESTING: 1,
    Profile.STAGING: 2,
    Profile.PRODUCTION: 3,
}
PROFILE_OF_CODE = {c: p for p, c in PROFILE_CODES.items()}
FLAG_DEBUG = 0x01
FLAG_DOMAIN_RELEASED = 0x02

# Offsets and sizes of the header (see the module docstring).
OFF_MAGIC = 0
OFF_VERSION = 4
OFF_PROFILE = 5
OFF_FLAGS = 6
OFF_NAME_LEN = 7
OFF_NAME = 8
V1_OFF_NAME_LEN = 5
V1_OFF_NAME = 6
SALT_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
MAX_NAME_LEN = 32
MAX_PURPOSE_LEN = 64
KEY_SIZE = 32
#: Largest plaintext :func:`seal` accepts (AES-GCM in ``cryptography`` stops at 2**31 - 1).
MAX_PLAINTEXT = 256 * 1024 * 1024
#: Largest caller context (associated data) accepted.
MAX_CONTEXT = 1024 * 1024

_NAME_RE = re.compile(rb"[a-z0-9][a-z0-9._-]{0,31}")
_PURPOSE_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@runtime_checkable
class LegacySealingV1(Protocol):
    """A driver that can still derive the version-1 sealing key (measurement only)."""

    def legacy_sealing_key_v1(self, context: bytes) -> bytes: ...


@dataclass(frozen=True)
class SealedHeader:
    """The parsed, not yet authenticated, header of a sealed blob (layout in the module doc).

    Version 1 headers have no purpose, profile or flags (``purpose`` is ``None``).
    """

    version: int
    platform: str
    purpose: str | None
    profile: Profile | None
    debug: bool
    mode: SealingMode
    salt: bytes
    nonce: bytes
    #: The raw header bytes, authenticated as associated data.
    header: bytes

    @classmethod
    def from_bytes(cls, blob: bytes) -> SealedHeader:
        """Parse the header; raises :class:`SealingError` naming the field that is wrong."""
        if len(blob) < OFF_NAME_LEN:
            raise SealingError(
                f"sealed blob truncated: {len(blob)} bytes, header needs at least {OFF_NAME}",
                code="sealed_blob_truncated",
            )
        if blob[OFF_MAGIC:OFF_VERSION] != MAGIC:
            raise SealingError(
                "not a sealed blob (bad magic at offset 0)", code="sealed_blob_invalid"
            )
        version = blob[OFF_VERSION]
        if version == LEGACY_VERSION:
            return cls._v1(blob)
        if version != VERSION:
            raise SealingError(
                f"unsupported sealed blob version {version} at offset {OFF_VERSION} "
                f"(this build reads versions {LEGACY_VERSION} and {VERSION})",
                code="sealed_blob_version",
            )
        if len(blob) < OFF_NAME:
            raise SealingError(
                f"sealed blob truncated: {len(blob)} bytes, header needs at least {OFF_NAME}",
                code="sealed_blob_truncated",
            )
        code = blob[OFF_PROFILE]
        if code not in PROFILE_OF_CODE:
            raise SealingError(
                f"sealed blob profile code {code} at offset {OFF_PROFILE} is not a profile",
                code="sealed_blob_invalid",
            )
        flags = blob[OFF_FLAGS]
        if flags & ~(FLAG_DEBUG | FLAG_DOMAIN_RELEASED):
            raise SealingError(
                f"sealed blob has unknown flag bits {flags:#04x} at offset {OFF_FLAGS}",
                code="sealed_blob_invalid",
            )
        name, at = _field(blob, OFF_NAME_LEN, MAX_NAME_LEN, "platform name")
        if _NAME_RE.fullmatch(name) is None:
            raise SealingError(
                f"sealed blob platform name at offset {OFF_NAME} is not a platform name",
                code="sealed_blob_invalid",
            )
        purpose, at = _field(blob, at, MAX_PURPOSE_LEN, "purpose")
        if _PURPOSE_RE.fullmatch(purpose.decode("ascii", "replace")) is None:
            raise SealingError(
                f"sealed blob purpose at offset {at - len(purpose)} is not a purpose name",
                code="sealed_blob_invalid",
            )
        end = at + SALT_SIZE + NONCE_SIZE
        if len(blob) < end + TAG_SIZE:
            raise SealingError(
                f"sealed blob truncated: {len(blob)} bytes, needs at least {end + TAG_SIZE}",
                code="sealed_blob_truncated",
            )
        return cls(
            version=version,
            platform=name.decode("ascii"),
            purpose=purpose.decode("ascii"),
            profile=PROFILE_OF_CODE[code],
            debug=bool(flags & FLAG_DEBUG),
            mode=SealingMode.DOMAIN_RELEASED
            if flags & FLAG_DOMAIN_RELEASED
            else SealingMode.PLATFORM,
            salt=blob[at : at + SALT_SIZE],
            nonce=blob[at + SALT_SIZE : end],
            header=blob[:end],
        )

    @classmethod
    def _v1(cls, blob: bytes) -> SealedHeader:
        name, at = _field(blob, V1_OFF_NAME_LEN, MAX_NAME_LEN, "platform name")
        end = at + SALT_SIZE + NONCE_SIZE
        if len(blob) < end + TAG_SIZE:
            raise SealingError(
                f"sealed blob truncated: {len(blob)} bytes, needs at least {end + TAG_SIZE}",
                code="sealed_blob_truncated",
            )
        if _NAME_RE.fullmatch(name) is None:
            raise SealingError(
                f"sealed blob platform name at offset {V1_OFF_NAME} is not a platform name",
                code="sealed_blob_invalid",
            )
        return cls(
            version=LEGACY_VERSION,
            platform=name.decode("ascii"),
            purpose=None,
            profile=None,
            debug=False,
            mode=SealingMode.PLATFORM,
            salt=blob[at : at + SALT_SIZE],
            nonce=blob[at + SALT_SIZE : end],
            header=blob[:end],
        )


def _field(blob: bytes, len_at: int, limit: int, what: str) -> tuple[bytes, int]:
    """A length-prefixed (1 byte) field at ``len_at``: its bytes and the offset after it."""
    if len(blob) <= len_at:
        raise SealingError(
            f"sealed blob truncated before the {what} length at offset {len_at}",
            code="sealed_blob_truncated",
        )
    n = blob[len_at]
    if not 1 <= n <= limit:
        raise SealingError(
            f"sealed blob {what} length {n} at offset {len_at} out of range 1..{limit}",
            code="sealed_blob_invalid",
        )
    end = len_at + 1 + n
    if len(blob) < end:
        raise SealingError(
            f"sealed blob truncated inside the {what} at offset {len_at + 1}",
            code="sealed_blob_truncated",
        )
    return blob[len_at + 1 : end], end


def check_app_purpose(purpose: str) -> str:
    """An application's purpose name: ``[a-z0-9][a-z0-9._-]*``, 1..64, not ``veritee...``."""
    _check_purpose(purpose)
    if purpose.startswith(_RESERVED_PREFIX):
        raise UsageError(
            f"purpose names starting with {_RESERVED_PREFIX!r} are reserved for veritee's own keys",
            code="sealing_purpose_reserved",
        )
    return purpose


def _check_purpose(purpose: str) -> bytes:
    if not isinstance(purpose, str) or _PURPOSE_RE.fullmatch(purpose) is None:
        raise UsageError(
            f"a sealing purpose is 1..{MAX_PURPOSE_LEN} characters of [a-z0-9._-], "
            "starting with a letter or digit",
            code="sealing_purpose_invalid",
        )
    return purpose.encode("ascii")


def _check_context(context: bytes) -> bytes:
    if not isinstance(context, bytes | bytearray | memoryview):
        raise UsageError("a sealing context is bytes", code="sealing_context_invalid")
    if len(context) > MAX_CONTEXT:
        raise OversizedError(
            f"sealing context of {len(context)} bytes (limit {MAX_CONTEXT})", field="context"
        )
    return bytes(context)


def _platform_name(platform: Platform) -> bytes:
    name = platform.name.encode("ascii", "replace")
    if _NAME_RE.fullmatch(name) is None:
        raise UsageError(f"platform name {platform.name!r} cannot be sealed to", code="usage")
    return name


def _lp(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


def _root_key(platform: Platform, context: bytes) -> bytes:
    root = platform.sealing_key(context)
    if not isinstance(root, bytes) or len(root) != KEY_SIZE:
        raise UsageError(
            f"platform {platform.name!r} returned a sealing key that is not {KEY_SIZE} bytes"
        )
    return root


def _derive_key(
    platform: Platform, name: bytes, mode: SealingMode, purpose: bytes, salt: bytes
) -> AESGCM:
    """The per-blob key: HKDF over the platform's key, ``info`` naming everything it binds."""
    root = _root_key(platform, SEAL_CONTEXT)
    measurement = platform.measurement.lower().encode() if mode is SealingMode.PLATFORM else b""
    info = (
        b"veritee-seal-v2|aes-256-gcm"
        + _lp(name)
        + _lp(mode.value.encode())
        + _lp(measurement)
        + _lp(platform.profile.value.encode())
        + bytes([1 if platform.debug else 0])
        + _lp(purpose)
    )
    key = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(root)
    return AESGCM(key)


def _mode(platform: Platform) -> SealingMode:
    mode = platform.sealing_mode
    if not isinstance(mode, SealingMode):
        raise UsageError(f"platform {platform.name!r} has no valid sealing mode")
    return mode


def seal(platform: Platform, data: bytes, *, purpose: str, context: bytes = b"") -> bytes:
    """Encrypt ``data`` for ``purpose`` so that only this workload can unseal it.

    "This workload" is: this platform instance, this measurement (platform-bound mode), this
    profile and this debug state. ``context`` is authenticated but not stored: :func:`unseal`
    must be given the same value (bind the blob to where it belongs, e.g. a file name and a
    version). Raises :class:`OversizedError` above :data:`MAX_PLAINTEXT` bytes and
    :class:`UsageError` for a malformed purpose.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UsageError("seal() takes bytes")
    if len(data) > MAX_PLAINTEXT:
        raise OversizedError(f"cannot seal {len(data)} bytes (limit {MAX_PLAINTEXT})", field="data")
    purpose_b = _check_purpose(purpose)
    context = _check_context(context)
    name = _platform_name(platform)
    mode = _mode(platform)
    profile = platform.profile
    flags = (FLAG_DEBUG if platform.debug else 0) | (
        FLAG_DOMAIN_RELEASED if mode is SealingMode.DOMAIN_RELEASED else 0
    )
    salt = os.urandom(SALT_SIZE)
    nonce = os.urandom(NONCE_SIZE)
    header = (
        MAGIC
        + bytes([VERSION, PROFILE_CODES[profile], flags, len(name)])
        + name
        + bytes([len(purpose_b)])
        + purpose_b
        + salt
        + nonce
    )
    aead = _derive_key(platform, name, mode, purpose_b, salt)
    return header + aead.encrypt(nonce, bytes(data), header + context)


def unseal(platform: Platform, blob: bytes, *, purpose: str, context: bytes = b"") -> bytes:
    """Decrypt a blob made by :func:`seal` for ``purpose`` and ``context`` by this workload.

    Raises :class:`SealingError` (and nothing else, for any blob) if the blob is not bytes, is
    malformed, truncated or tampered, was sealed for another purpose, on another platform, in
    another profile or debug state, by another measurement or platform install, or with
    another ``context``.
    """
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise SealingError("a sealed blob must be bytes", code="sealed_blob_invalid")
    blob = bytes(blob)
    if len(blob) > MAX_PLAINTEXT + 1024:
        raise SealingError(
            f"sealed blob of {len(blob)} bytes is larger than any blob seal() makes",
            code="sealed_blob_invalid",
        )
    purpose_b = _check_purpose(purpose)
    context = _check_context(context)
    hdr = SealedHeader.from_bytes(blob)
    name = _platform_name(platform)
    if hdr.platform.encode("ascii") != name:
        raise SealingError(
            f"blob was sealed on platform {hdr.platform!r}, this is {platform.name!r}",
            code="sealed_other_platform",
        )
    if hdr.version == LEGACY_VERSION:
        return _unseal_v1(platform, blob, hdr, purpose, context)
    if hdr.purpose != purpose:
        raise SealingError(
            f"blob was sealed for purpose {hdr.purpose!r}, not {purpose!r}",
            code="sealed_purpose_mismatch",
        )
    mode = _mode(platform)
    if hdr.mode is not mode:
        raise SealingError(
            f"blob was sealed with a {hdr.mode.value} key, this platform uses {mode.value} keys",
            code="sealed_other_mode",
        )
    if hdr.profile is not platform.profile or hdr.debug != platform.debug:
        raise SealingError(
            f"blob was sealed by a {_state(hdr.profile, hdr.debug)} instance, this one is "
            f"{_state(platform.profile, platform.debug)}",
            code="sealed_other_profile",
        )
    aead = _derive_key(platform, name, mode, purpose_b, hdr.salt)
    return _open(aead, hdr, blob, hdr.header + context)


def _state(profile: Profile | None, debug: bool) -> str:
    return f"{profile.value if profile else '?'}{' debug' if debug else ''}"


def _open(aead: AESGCM, hdr: SealedHeader, blob: bytes, aad: bytes) -> bytes:
    try:
        return aead.decrypt(hdr.nonce, blob[len(hdr.header) :], aad)
    except InvalidTag:
        raise SealingError(
            "sealed blob does not unseal here: it was sealed by another measurement or "
            "platform install, with another context, or it was tampered with",
            code="unseal_failed",
        ) from None


def _legacy_aad(purpose: str, context: bytes) -> bytes:
    """The associated data a version-1 blob of ``purpose`` was sealed with.

    Version 1 had no purposes: ``Trust.seal`` and the log's pending buffer sealed with no
    associated data, the key store with :data:`LEGACY_KEYSTORE_AAD`. So only these three
    purposes can have version-1 blobs; an application purpose named later has none.
    """
    if purpose == PURPOSE_KEYSTORE:
        return LEGACY_KEYSTORE_AAD + context
    if purpose == PURPOSE_APP and context == LEGACY_KEYSTORE_AAD:
        raise SealingError(
            "a version-1 key store is not opened through an application purpose",
            code="sealed_purpose_mismatch",
        )
    if purpose in (PURPOSE_APP, PURPOSE_LOG_PENDING):
        return context
    raise SealingError(
        f"blob is in sealed format 1, which has no purpose {purpose!r}",
        code="sealed_purpose_mismatch",
    )


def _unseal_v1(
    platform: Platform, blob: bytes, hdr: SealedHeader, purpose: str, context: bytes
) -> bytes:
    if not isinstance(platform, LegacySealingV1):
        raise SealingError(
            f"blob is in sealed format 1, which platform {platform.name!r} cannot open",
            code="sealed_blob_version",
        )
    root = platform.legacy_sealing_key_v1(LEGACY_SEAL_CONTEXT)
    if not isinstance(root, bytes) or len(root) != KEY_SIZE:
        raise UsageError(f"platform {platform.name!r} returned a bad version-1 sealing key")
    info = (
        b"veritee-seal-v1|aes-256-gcm|"
        + hdr.platform.encode("ascii")
        + b"|"
        + platform.measurement.lower().encode()
    )
    key = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=hdr.salt, info=info).derive(root)
    return _open(AESGCM(key), hdr, blob, hdr.header + _legacy_aad(purpose, context))


@dataclass(frozen=True)
class Sealer:
    """``seal``/``unseal`` for one platform, purpose and context, as plain callables.

    What the SDK hands to components that seal their own keys (the confidential log's pending
    buffer), so they never choose the purpose themselves.
    """

    platform: Platform
    purpose: str
    context: bytes = b""

    def seal(self, data: bytes) -> bytes:
        return seal(self.platform, data, purpose=self.purpose, context=self.context)

    def unseal(self, blob: bytes) -> bytes:
        return unseal(self.platform, blob, purpose=self.purpose, context=self.context)
