"""RISC-V Keystone attestation reports: parse and verify. Pure: no network, clock or env.

Layout (keystone-enclave/keystone ``sdk/include/verifier/Report.hpp``, ``report_t``; all
integers little-endian)::

    enclave report
    0x000   64  enclave.hash        SHA3-512 measurement of the enclave (loader, runtime, eapp)
    0x040    8  enclave.data_len    u64, at most 1,024
    0x048 1024  enclave.data        the data the enclave asked to be attested; bytes past
                                    data_len are not signed (see "Forms" below)
    0x448   64  enclave.signature   by the SM key over hash || data_len || data[:data_len]
    security-monitor (SM) report
    0x488   64  sm.hash             SHA3-512 measurement of the security monitor
    0x4C8   32  sm.public_key       the SM's attestation key
    0x4E8   64  sm.signature        by the device root key over sm.hash || sm.public_key
    0x528   32  dev_public_key      the device root key
    0x548       end: 1,352 bytes

Forms: the whole struct as ``Report::fromBytes`` reads it (1,352 bytes), or the compact form
VTT's Rust crate for Keystone reports uses, in which the data field is only ``data_len`` bytes
long (328 + data_len bytes; the offsets after the data shift by 1,024 - data_len). The SM
(``sm/src/enclave.c`` ``attest_enclave``) copies only ``data_len`` bytes into an uninitialised
struct on its stack, so in the struct form the tail of the data field is whatever was there:
no signature covers it. veritee requires it to be zero (``padding_not_zero`` otherwise), so
that no byte of an accepted report can change without a refusal and one report has one
encoding; an attester zeroes the tail or sends the compact form (:func:`to_compact`).

Signatures: Ed25519 in which SHA3-512 replaces SHA-512 (Keystone's copies of orlp/ed25519),
checked by :mod:`veritee.evidence.eddsa` with :data:`~veritee.evidence.eddsa.SHA3_512`; no RFC
8032 library verifies them.

:func:`verify` checks (numbered as in the code):

1. parse: size (at most 1,352 bytes; ``oversized``), ``data_len`` at most 1,024
   (``report_data_oversized``), the length matches one form (``truncated``,
   ``trailing_bytes``), the struct form's unsigned tail is zero (``padding_not_zero``);
2. the SM report's signature with the device key the report names (``key_invalid``,
   ``signature_malformed``, ``signature_invalid``);
3. the enclave report's signature with the SM key the SM report certifies.

The device key the report names proves nothing by itself: a report can name any key. Device
keys are trusted only through a policy (``platforms.keystone.device_keys``, the raw 32-byte
keys in hex); there is no built-in trust, and the baseline refuses Keystone evidence with
``platform_key_not_trusted``. Claims: ``platform`` ``keystone``, ``measurement`` (the enclave
hash), ``sm_measurement``, ``report_data`` (the data, 0 to 1,024 bytes), ``device_key``,
``sm_public_key``, ``debug`` false (the report carries no debug state and Keystone's SM gives
enclaves no debug mode), ``tcb_status`` null.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from veritee._lru import Lru
from veritee.collateral import Collateral
from veritee.errors import MalformedError, OversizedError, UsageError, VerificationError
from veritee.evidence import eddsa
from veritee.evidence.claims import VerifiedEvidence

__all__ = [
    "COMPACT_FIXED_SIZE",
    "DATA_MAX",
    "REPORT_SIZE",
    "KeystoneReport",
    "detect",
    "parse_claims",
    "to_compact",
    "verify",
]

HASH_SIZE = 64  # SHA3-512 (MDSIZE)
SIGNATURE_SIZE = 64
PUBLIC_KEY_SIZE = 32
#: ATTEST_DATA_MAXLEN of the SM and the SDK.
DATA_MAX = 1024
OFF_DATA_LEN = HASH_SIZE
OFF_DATA = OFF_DATA_LEN + 8
#: sizeof(report_t): the struct form.
REPORT_SIZE = (
    OFF_DATA
    + DATA_MAX
    + SIGNATURE_SIZE
    + HASH_SIZE
    + PUBLIC_KEY_SIZE
    + SIGNATURE_SIZE
    + PUBLIC_KEY_SIZE
)
#: The compact form without its data: 328 bytes.
COMPACT_FIXED_SIZE = REPORT_SIZE - DATA_MAX

#: SM reports already verified: (device key, SM hash, SM key, SM signature). A device's SM
#: report is the same in every report until it reboots, so this halves the usual cost. Only
#: successes are kept, keyed by every byte the check read.
_SM_VERIFIED: Lru[bytes, bool] = Lru(256)


@dataclass(frozen=True)
class KeystoneReport:
    """A parsed Keystone ``report_t`` (either form)."""

    enclave_hash: bytes
    data: bytes
    enclave_signature: bytes
    sm_hash: bytes
    sm_public_key: bytes
    sm_signature: bytes
    dev_public_key: bytes
    compact: bool

    @property
    def enclave_signed(self) -> bytes:
        """What the SM signs: ``hash || data_len (u64 LE) || data[:data_len]``."""
        return self.enclave_hash + struct.pack("<Q", len(self.data)) + self.data

    @property
    def sm_signed(self) -> bytes:
        """What the device key signs: ``sm.hash || sm.public_key``."""
        return self.sm_hash + self.sm_public_key

    @classmethod
    def from_bytes(cls, data: bytes) -> KeystoneReport:
        """Parse either form (module docstring); raise MalformedError naming the field."""
        n = len(data)
        if n > REPORT_SIZE:
            raise OversizedError(f"a Keystone report is at most {REPORT_SIZE} bytes, got {n}")
        if n < OFF_DATA:
            raise MalformedError(f"truncated: a Keystone report is at least {COMPACT_FIXED_SIZE} "
                                 f"bytes, got {n}", field="enclave.data_len", offset=n,
                                 code="truncated")  # fmt: skip
        (data_len,) = struct.unpack_from("<Q", data, OFF_DATA_LEN)
        if data_len > DATA_MAX:
            raise MalformedError(
                f"data_len {data_len} exceeds Keystone's maximum of {DATA_MAX} bytes",
                field="enclave.data_len", offset=OFF_DATA_LEN, code="report_data_oversized",
            )  # fmt: skip
        if n == REPORT_SIZE:
            field_size = DATA_MAX
        elif n == COMPACT_FIXED_SIZE + data_len:
            field_size = data_len
        elif n < COMPACT_FIXED_SIZE + data_len:
            raise MalformedError(
                f"truncated: {n} bytes, but data_len {data_len} needs {COMPACT_FIXED_SIZE + data_len} "
                f"(compact form) or {REPORT_SIZE} (struct form)", field="end", offset=n, code="truncated",
            )  # fmt: skip
        else:
            raise MalformedError(
                f"{n - COMPACT_FIXED_SIZE - data_len} bytes follow a compact report with data_len "
                f"{data_len}", field="end", offset=COMPACT_FIXED_SIZE + data_len, code="trailing_bytes",
            )  # fmt: skip
        view = memoryview(data)
        off = OFF_DATA + data_len
        if any(view[off : OFF_DATA + field_size]):
            raise MalformedError(
                "the data field past data_len is not zero (unsigned bytes; zero them or send the "
                "compact form)", field="enclave.data", offset=off, code="padding_not_zero",
            )  # fmt: skip
        off = OFF_DATA + field_size

        def take(size: int) -> bytes:
            nonlocal off
            out = bytes(view[off : off + size])
            off += size
            return out

        enclave_signature = take(SIGNATURE_SIZE)
        sm_hash = take(HASH_SIZE)
        sm_public_key = take(PUBLIC_KEY_SIZE)
        sm_signature = take(SIGNATURE_SIZE)
        dev_public_key = take(PUBLIC_KEY_SIZE)
        assert off == n
        return cls(
            enclave_hash=bytes(view[:HASH_SIZE]),
            data=bytes(view[OFF_DATA : OFF_DATA + data_len]),
            enclave_signature=enclave_signature,
            sm_hash=sm_hash,
            sm_public_key=sm_public_key,
            sm_signature=sm_signature,
            dev_public_key=dev_public_key,
            compact=n != REPORT_SIZE,
        )

    def to_compact(self) -> bytes:
        """The compact form: the data field only ``data_len`` long."""
        return b"".join([
            self.enclave_signed, self.enclave_signature, self.sm_hash, self.sm_public_key,
            self.sm_signature, self.dev_public_key,
        ])  # fmt: skip

    def claims(self) -> dict[str, Any]:
        """Normalized claims (DESIGN.md, "Normalized claims"); JSON types only."""
        return {
            "platform": "keystone",
            "measurement": self.enclave_hash.hex(),
            "sm_measurement": self.sm_hash.hex(),
            "report_data": self.data.hex(),
            "debug": False,
            "tcb_status": None,
            "device_key": self.dev_public_key.hex(),
            "sm_public_key": self.sm_public_key.hex(),
        }


def to_compact(data: bytes) -> bytes:
    """A struct-form report (1,352 bytes, any bytes in the data field's unsigned tail) in the
    compact form, which has no unsigned bytes. The relying party's explicit choice to drop
    what no signature covers; nothing is verified here. Raises MalformedError."""
    if len(data) != REPORT_SIZE:
        raise MalformedError(
            f"a struct-form report is {REPORT_SIZE} bytes", field="end", offset=len(data)
        )
    (data_len,) = struct.unpack_from("<Q", data, OFF_DATA_LEN)
    if data_len > DATA_MAX:
        raise MalformedError(f"data_len {data_len} exceeds {DATA_MAX}", field="enclave.data_len",
                             offset=OFF_DATA_LEN, code="report_data_oversized")  # fmt: skip
    return bytes(data[: OFF_DATA + data_len]) + bytes(data[OFF_DATA + DATA_MAX :])


def detect(data: bytes) -> bool:
    """No magic: a length that one form gives for the ``data_len`` at 0x40 (at most 1,024).
    Tried last by ``--format auto``."""
    n = len(data)
    if not COMPACT_FIXED_SIZE <= n <= REPORT_SIZE:
        return False
    (data_len,) = struct.unpack_from("<Q", data, OFF_DATA_LEN)
    return data_len <= DATA_MAX and (n == REPORT_SIZE or n == COMPACT_FIXED_SIZE + data_len)


def parse_claims(data: bytes) -> dict[str, Any]:
    """UNVERIFIED claims, for display."""
    return KeystoneReport.from_bytes(data).claims()


def _check(what: str, key: bytes, message: bytes, signature: bytes) -> None:
    try:
        eddsa.verify(key, message, signature, hash=eddsa.SHA3_512)
    except VerificationError as e:
        raise VerificationError(f"{what}: {e.message}", code=e.code) from None


def verify(
    data: bytes, *, collateral: Collateral, at: datetime, trust: Any = None
) -> VerifiedEvidence:
    """Verify a Keystone report's two signatures (module docstring); ``at`` is recorded (no
    certificates). ``collateral`` is not used. ``trust`` must be None: device keys are trusted
    only by a policy. Raises MalformedError / VerificationError."""
    if at.tzinfo is None:
        raise UsageError("verification time must be timezone-aware")
    if trust is not None:
        raise UsageError("keystone takes no trust root: device keys are trusted by a policy's "
                         "platforms.keystone.device_keys", code="trust_root_invalid")  # fmt: skip
    # 1. Parse strictly.
    report = KeystoneReport.from_bytes(data)
    # 2. The SM report, signed by the device key (cached: the same in every report of a boot).
    cache_key = report.dev_public_key + report.sm_signed + report.sm_signature
    if _SM_VERIFIED.get(cache_key) is None:
        _check("security-monitor report (device key)", report.dev_public_key, report.sm_signed,
               report.sm_signature)  # fmt: skip
        _SM_VERIFIED.put(cache_key, True)
    # 3. The enclave report, signed by the SM key.
    _check("enclave report (SM key)", report.sm_public_key, report.enclave_signed,
           report.enclave_signature)  # fmt: skip
    return VerifiedEvidence(format="keystone", claims=report.claims(), verified_at=at)
