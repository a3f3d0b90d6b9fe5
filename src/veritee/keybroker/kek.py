"""Key-encryption keys (KEK): the root of secrets at rest, kept apart from the database.

A secret version is encrypted under its own data key (DEK, see :mod:`veritee.keybroker.vault`);
the DEK is stored only wrapped by a KEK. The KEK lives outside the database: a file in the data
folder (:class:`FileKek`) or an environment variable (:class:`EnvKek`). A KMS or HSM plugs in by
implementing :class:`KeyEncryptionKey` (``kek_id``, ``wrap``, ``unwrap``).

Wrapped-DEK layout (:class:`AesGcmKek`)::

    0x00  1   VERSION     1
    0x01  12  NONCE       random, per wrap
    0x0D  n   SEALED      AES-256-GCM(KEK, NONCE, DEK, aad) including the 16-byte tag

The ``aad`` binds the secret name and version, so a wrapped DEK moved to another row does not
unwrap. A failed unwrap raises :class:`~veritee.errors.VerificationError` ``secret_tampered``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import UsageError, VerificationError

__all__ = [
    "KEK_ENV",
    "KEK_FILE",
    "KEY_SIZE",
    "AesGcmKek",
    "EnvKek",
    "FileKek",
    "KeyEncryptionKey",
    "domain_kek",
]

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
WRAP_VERSION = 1
OFF_VERSION = 0
OFF_NONCE = 1
OFF_SEALED = OFF_NONCE + NONCE_SIZE
KEK_FILE = "secrets.kek"
#: The environment variable that, when set, holds the KEK instead of the file (base64).
KEK_ENV = "VERITEE_KEK"
_KEK_ID_TAG = b"veritee-kek-id-v1"


@runtime_checkable
class KeyEncryptionKey(Protocol):
    """What the vault needs from a KEK. A KMS/HSM adapter implements these three members."""

    @property
    def kek_id(self) -> str:
        """A stable, non-secret identifier of this key (stored next to each wrapped DEK)."""
        ...

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        """Encrypt ``dek`` bound to ``aad``."""
        ...

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        """Decrypt a wrapped DEK; raise ``VerificationError('secret_tampered')`` on any mismatch."""
        ...


class AesGcmKek:
    """A KEK held in memory as 32 raw bytes, wrapping with AES-256-GCM."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise UsageError(f"a key-encryption key must be {KEY_SIZE} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self._id = hashlib.sha256(_KEK_ID_TAG + key).hexdigest()[:32]

    def __repr__(self) -> str:  # never show key bytes
        return f"{type(self).__name__}(kek_id={self._id!r})"

    @property
    def kek_id(self) -> str:
        return self._id

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_SIZE)
        return bytes([WRAP_VERSION]) + nonce + self._aead.encrypt(nonce, dek, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < OFF_SEALED + TAG_SIZE or blob[OFF_VERSION] != WRAP_VERSION:
            raise VerificationError("wrapped data key is malformed", code="secret_tampered")
        nonce = blob[OFF_NONCE:OFF_SEALED]
        try:
            return self._aead.decrypt(nonce, blob[OFF_SEALED:], aad)
        except InvalidTag:
            raise VerificationError(
                "wrapped data key does not authenticate (tampered, moved, or another KEK)",
                code="secret_tampered",
            ) from None


class FileKek(AesGcmKek):
    """A KEK in a file (``<data>/secrets.kek`` by default), 32 random bytes, mode 0600.

    The file is created on first use; concurrent creators agree on whichever file landed first.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        """``create=False``: a missing file is a :class:`UsageError` (``kek_missing``)."""
        self.path = Path(path)
        super().__init__(_load_or_create(self.path, create))

    @classmethod
    def in_data_dir(cls, data_dir: str | os.PathLike[str], *, create: bool = True) -> FileKek:
        return cls(Path(data_dir) / KEK_FILE, create=create)


def _load_or_create(path: Path, create: bool = True) -> bytes:
    if path.exists():
        key = path.read_bytes()
        if len(key) != KEY_SIZE:
            raise UsageError(f"{path} is not a {KEY_SIZE}-byte key-encryption key")
        return key
    if not create:
        raise UsageError(f"no key-encryption key at {path}", code="kek_missing")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(KEY_SIZE))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return _load_or_create(path)


class EnvKek(AesGcmKek):
    """A KEK given base64-encoded (standard or URL alphabet) in an environment variable."""

    def __init__(self, var: str = KEK_ENV, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get(var)
        if not raw:
            raise UsageError(f"environment variable {var} is not set")
        try:
            text = raw.strip().replace("-", "+").replace("_", "/")
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise UsageError(f"{var} is not valid base64") from None
        if len(key) != KEY_SIZE:
            raise UsageError(f"{var} must hold {KEY_SIZE} bytes, it holds {len(key)}")
        self.var = var
        super().__init__(key)


def domain_kek(
    data_dir: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    *,
    create: bool = True,
) -> AesGcmKek:
    """The domain's KEK: ``$VERITEE_KEK`` when set, else ``<data>/secrets.kek`` (created once,
    unless ``create`` is False: then a missing file is ``UsageError('kek_missing')``)."""
    env = os.environ if environ is None else environ
    if env.get(KEK_ENV):
        return EnvKek(KEK_ENV, env)
    return FileKek.in_data_dir(data_dir, create=create)
