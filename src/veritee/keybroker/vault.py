"""Envelope encryption of secret versions (secrets at rest).

Every version of a secret gets a fresh 32-byte data key (DEK). The value is encrypted with
AES-256-GCM under the DEK; the DEK is stored only wrapped by the key-encryption key
(:mod:`veritee.keybroker.kek`). Both layers bind ``aad = b"veritee-secret-v1|" + name + b"|" +
version``, so a sealed blob copied onto another secret or version does not open.

Sealed-version layout (:meth:`SealedVersion.to_bytes`, integers little-endian)::

    0x00  8   MAGIC         b"VTSECv01"
    0x08  2   KEK_ID_LEN    length of the KEK identifier (ASCII)
    0x0A  k   KEK_ID
    ...   2   WRAPPED_LEN   length of the wrapped DEK
    ...   w   WRAPPED_DEK
    ...   12  NONCE         AES-GCM nonce for the value
    ...   4   CT_LEN        length of the ciphertext (value + 16-byte tag)
    ...   c   CIPHERTEXT

A blob that does not parse or does not authenticate raises
:class:`~veritee.errors.VerificationError` with code ``secret_tampered``; garbage is never
returned as a value. Plain values travel as :class:`SecretBytes`, whose ``repr`` is redacted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import MalformedError, OversizedError, UsageError, VerificationError
from veritee.evidence._reader import Reader
from veritee.keybroker.kek import KeyEncryptionKey

__all__ = [
    "MAGIC",
    "MAX_SECRET_BYTES",
    "SealedVersion",
    "SecretBytes",
    "open_blob",
    "open_sealed",
    "seal",
    "secret_aad",
    "validate_name",
]

MAGIC = b"VTSECv01"
MAX_SECRET_BYTES = 1024 * 1024
MAX_BLOB_BYTES = MAX_SECRET_BYTES + 4096
DEK_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
_AAD_TAG = b"veritee-secret-v1"
# Secret names: 1-3 segments separated by "/" (KBS resources are "repository/type/tag").
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_NAME = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT}){{0,2}}$")


class SecretBytes:
    """Secret bytes that never show themselves in ``repr``/``str`` (logs, tracebacks)."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = bytes(value)

    def reveal(self) -> bytes:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"SecretBytes(<redacted, {len(self._value)} bytes>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SecretBytes):
            return hmac.compare_digest(self._value, other._value)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(hashlib.sha256(self._value).digest())


def validate_name(name: str) -> str:
    """Check a secret name: 1-3 ``/``-separated segments of ``[A-Za-z0-9._-]``, each <= 64."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise UsageError(
            f"invalid secret name {name[:80]!r}: use 1-3 '/'-separated segments of letters, "
            "digits, '.', '_' or '-' (each starting with a letter or digit, at most 64 long)"
        )
    return name


def secret_aad(name: str, version: int) -> bytes:
    """The associated data binding a sealed value and its wrapped DEK to name and version."""
    return b"|".join((_AAD_TAG, name.encode("utf-8"), str(version).encode("ascii")))


@dataclass(frozen=True)
class SealedVersion:
    """One encrypted version of a secret as stored (see the module docstring for the layout)."""

    kek_id: str
    wrapped_dek: bytes
    nonce: bytes
    ciphertext: bytes

    def to_bytes(self) -> bytes:
        kid = self.kek_id.encode("ascii")
        return b"".join(
            (
                MAGIC,
                struct.pack("<H", len(kid)),
                kid,
                struct.pack("<H", len(self.wrapped_dek)),
                self.wrapped_dek,
                self.nonce,
                struct.pack("<I", len(self.ciphertext)),
                self.ciphertext,
            )
        )

    @classmethod
    def from_bytes(cls, blob: bytes) -> SealedVersion:
        """Parse a stored blob; raises :class:`MalformedError` naming the field and offset."""
        if len(blob) > MAX_BLOB_BYTES:
            raise OversizedError(f"sealed secret is {len(blob)} bytes", field="sealed")
        r = Reader(blob)
        if r.bytes(len(MAGIC), "magic") != MAGIC:
            raise MalformedError("not a veritee sealed secret", field="magic", offset=0)
        kid_len = struct.unpack("<H", r.bytes(2, "kek_id_len"))[0]
        try:
            kek_id = r.bytes(kid_len, "kek_id").decode("ascii")
        except UnicodeDecodeError:
            raise MalformedError("kek_id is not ASCII", field="kek_id") from None
        wrapped_len = struct.unpack("<H", r.bytes(2, "wrapped_len"))[0]
        wrapped = r.bytes(wrapped_len, "wrapped_dek")
        nonce = r.bytes(NONCE_SIZE, "nonce")
        ct_len = struct.unpack("<I", r.bytes(4, "ciphertext_len"))[0]
        if ct_len < TAG_SIZE:
            raise MalformedError("ciphertext shorter than its tag", field="ciphertext_len")
        ciphertext = r.bytes(ct_len, "ciphertext")
        if r.remaining:
            raise MalformedError(f"{r.remaining} trailing bytes", field="trailing", offset=r.offset)
        return cls(kek_id=kek_id, wrapped_dek=wrapped, nonce=nonce, ciphertext=ciphertext)

    def value_blob(self) -> bytes:
        """``NONCE || CIPHERTEXT``: what the storage keeps in its ``ciphertext`` column."""
        return self.nonce + self.ciphertext

    @classmethod
    def from_columns(cls, kek_id: str, wrapped_dek: bytes, value_blob: bytes) -> SealedVersion:
        """Rebuild from storage columns; a short blob raises :class:`MalformedError`."""
        if len(value_blob) < NONCE_SIZE + TAG_SIZE:
            raise MalformedError(
                "stored ciphertext is shorter than nonce and tag", field="ciphertext"
            )
        return cls(kek_id, wrapped_dek, value_blob[:NONCE_SIZE], value_blob[NONCE_SIZE:])

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the sealed blob: what the audit log records, never the value."""
        return hashlib.sha256(self.to_bytes()).hexdigest()


def seal(
    kek: KeyEncryptionKey, name: str, version: int, value: bytes | SecretBytes
) -> SealedVersion:
    """Encrypt ``value`` as version ``version`` of secret ``name`` under a fresh DEK."""
    validate_name(name)
    raw = value.reveal() if isinstance(value, SecretBytes) else bytes(value)
    if len(raw) > MAX_SECRET_BYTES:
        raise OversizedError(
            f"secret value is {len(raw)} bytes, the limit is {MAX_SECRET_BYTES}", field="value"
        )
    if version < 1:
        raise UsageError("secret versions start at 1")
    aad = secret_aad(name, version)
    dek = AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(NONCE_SIZE)
    ciphertext = AESGCM(dek).encrypt(nonce, raw, aad)
    return SealedVersion(
        kek_id=kek.kek_id, wrapped_dek=kek.wrap(dek, aad), nonce=nonce, ciphertext=ciphertext
    )


def open_sealed(
    kek: KeyEncryptionKey, name: str, version: int, sealed: SealedVersion
) -> SecretBytes:
    """Decrypt a sealed version. Tampering, a move to another name/version, or another KEK
    raises :class:`VerificationError` (``secret_tampered`` / ``kek_mismatch``)."""
    if not hmac.compare_digest(sealed.kek_id.encode(), kek.kek_id.encode()):
        raise VerificationError(
            f"secret {name!r} v{version} was sealed under another key-encryption key "
            f"({sealed.kek_id[:12]}...), not the configured one ({kek.kek_id[:12]}...)",
            code="kek_mismatch",
        )
    aad = secret_aad(name, version)
    dek = kek.unwrap(sealed.wrapped_dek, aad)
    try:
        return SecretBytes(AESGCM(dek).decrypt(sealed.nonce, sealed.ciphertext, aad))
    except (InvalidTag, ValueError):
        raise VerificationError(
            f"secret {name!r} v{version} does not authenticate: tampered at rest",
            code="secret_tampered",
        ) from None


def open_blob(
    kek: KeyEncryptionKey,
    name: str,
    version: int,
    blob: bytes,
    *,
    columns: tuple[str, bytes] | None = None,
) -> SecretBytes:
    """Parse and decrypt a stored blob; a blob that does not parse counts as tampered.

    With ``columns=(kek_id, wrapped_dek)``, ``blob`` is the storage's ``ciphertext`` column
    (:meth:`SealedVersion.value_blob`); otherwise it is :meth:`SealedVersion.to_bytes`.
    """
    try:
        if columns is None:
            sealed = SealedVersion.from_bytes(blob)
        else:
            sealed = SealedVersion.from_columns(columns[0], columns[1], blob)
    except MalformedError as e:
        raise VerificationError(
            f"secret {name!r} v{version} is damaged at rest: {e.message}", code="secret_tampered"
        ) from None
    return open_sealed(kek, name, version, sealed)
