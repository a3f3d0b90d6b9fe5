"""Test support for RISC-V Keystone: Ed25519 signing with a chosen hash, and reports built the
way Keystone's security monitor builds them (test code only: veritee itself never signs).

Signing follows orlp/ed25519 as Keystone's copies have it (``sm/src/ed25519/sign.c``,
``keypair.c``), which is RFC 8032 §5.1.5-6 with ``hash`` in place of SHA-512: a seed expands to
``hash(seed)``, whose first half clamped is the scalar ``a`` and whose second half the prefix;
``r = hash(prefix || M) mod L``, ``R = [r]B``, ``k = hash(R || A || M) mod L``,
``S = (r + k*a) mod L``. Keystone keeps secret keys expanded (``a || prefix``, 64 bytes), as its
published test device key is.

The device key is read from ``../shared/testvectors/keystone`` (the published TEST key of
keystone-enclave/keystone ``bootrom/test_dev_key.h``); tests skip where it is absent.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import pytest
from tests.conftest import TESTVECTORS

from veritee.evidence import eddsa
from veritee.evidence.eddsa import SHA3_512, HashFn

__all__ = [
    "DEV_KEY_HEADER",
    "KeystoneKey",
    "build_report",
    "dev_key",
    "expand_seed",
    "sign",
]

DEV_KEY_DIR = TESTVECTORS / "keystone"
DEV_KEY_HEADER = DEV_KEY_DIR / "keystone_bootrom_test_dev_key.h"


@dataclass(frozen=True)
class KeystoneKey:
    """An expanded Ed25519 secret key (``scalar || prefix``) and its public key."""

    secret: bytes  # 64 bytes: clamped scalar (little-endian) || prefix
    public: bytes  # 32 bytes

    def sign(self, message: bytes, *, hash: HashFn = SHA3_512) -> bytes:
        return sign(self.secret, self.public, message, hash=hash)


def _clamp(h: bytes) -> bytes:
    a = bytearray(h[:32])
    a[0] &= 248
    a[31] &= 127
    a[31] |= 64
    return bytes(a)


def expand_seed(seed: bytes, *, hash: HashFn = SHA3_512) -> KeystoneKey:
    """RFC 8032 §5.1.5 (``hash`` for SHA-512): the key pair of a 32-byte seed."""
    h = hash(seed)
    secret = _clamp(h) + h[32:]
    return KeystoneKey(secret, eddsa.base_mult(int.from_bytes(secret[:32], "little")))


def sign(secret: bytes, public: bytes, message: bytes, *, hash: HashFn = SHA3_512) -> bytes:
    """RFC 8032 §5.1.6 with ``hash``, from an expanded secret key (orlp/ed25519's sign.c)."""
    assert len(secret) == 64 and len(public) == 32
    a = int.from_bytes(secret[:32], "little")
    r = int.from_bytes(hash(secret[32:] + message), "little") % eddsa.L
    r_enc = eddsa.base_mult(r)
    k = int.from_bytes(hash(r_enc + public + message), "little") % eddsa.L
    return r_enc + ((r + k * a) % eddsa.L).to_bytes(32, "little")


def _c_array(text: str, name: str) -> bytes:
    m = re.search(re.escape(name) + r"\[\]\s*=\s*\{([^}]*)\}", text)
    if m is None:
        raise AssertionError(f"{name} not found in {DEV_KEY_HEADER}")
    return bytes(int(tok, 16) for tok in re.findall(r"0x([0-9a-fA-F]{2})", m.group(1)))


def dev_key() -> KeystoneKey:
    """Keystone's published TEST device key, read from the shared test vectors (or skip)."""
    if not DEV_KEY_HEADER.is_file():
        pytest.skip(f"Keystone test device key not found at {DEV_KEY_HEADER} "
                    "(../shared/testvectors/keystone is absent)")  # fmt: skip
    text = DEV_KEY_HEADER.read_text()
    secret = _c_array(text, "_sanctum_dev_secret_key")
    public = _c_array(text, "_sanctum_dev_public_key")
    assert len(secret) == 64 and len(public) == 32
    return KeystoneKey(secret, public)


def build_report(
    *,
    device: KeystoneKey,
    sm: KeystoneKey,
    enclave_hash: bytes,
    sm_hash: bytes,
    data: bytes,
    compact: bool = False,
    padding: bytes | None = None,
    sm_signed_by: KeystoneKey | None = None,
    dev_public_key: bytes | None = None,
) -> bytes:
    """A report as Keystone's SM makes it (``sm/src/enclave.c`` ``attest_enclave``; layout
    ``sdk/include/verifier/Report.hpp``): the enclave report signed by the SM key over
    ``hash || data_len (u64 LE) || data``, the SM report signed by the device key over
    ``sm.hash || sm.public_key``, then the device public key.

    ``compact``: data only ``data_len`` long (VTT's form); else the 1352-byte struct with the
    data field zero-padded (or ``padding``) to 1,024 bytes. ``sm_signed_by`` and
    ``dev_public_key`` make inconsistent reports for negative tests."""
    assert len(enclave_hash) == 64 and len(sm_hash) == 64 and len(data) <= 1024
    head = enclave_hash + struct.pack("<Q", len(data)) + data
    enclave_sig = sm.sign(head)
    sm_sig = (sm_signed_by or device).sign(sm_hash + sm.public)
    if compact:
        field = data
    else:
        pad = bytes(1024 - len(data)) if padding is None else padding
        assert len(data) + len(pad) == 1024
        field = data + pad
    return b"".join([
        enclave_hash, struct.pack("<Q", len(data)), field, enclave_sig,
        sm_hash, sm.public, sm_sig,
        device.public if dev_public_key is None else dev_public_key,
    ])  # fmt: skip
