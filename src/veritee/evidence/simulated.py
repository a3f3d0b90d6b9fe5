"""The simulated platform's evidence: a development TEE with a per-install ECDSA P-384 key.

Layout (all integers little-endian; offsets are constants below)::

    0x00  8   MAGIC            b"VTSIMEV1"
    0x08  2   VERSION          1
    0x0A  2   FLAGS            bit 0: DEBUG
    0x0C  1   PROFILE          0 development, 1 testing, 2 staging, 3 production
    0x0D  3   RESERVED         zero
    0x10  48  MEASUREMENT      SHA-384 over the measured files (see veritee.platforms.simulated)
    0x40  64  REPORT_DATA      chosen by the workload (binds nonce + key, see veritee.binding)
    0x80  2   KEY_LEN          length of the platform key's SubjectPublicKeyInfo DER
    0x82  n   PLATFORM_KEY     SPKI DER of the platform's P-384 public key
    ...   2   SIG_LEN          length of the signature
    ...   m   SIGNATURE        ECDSA P-384 / SHA-384 (DER) over every byte before SIG_LEN

The report is signed by the key it names, so the signature alone proves nothing about where it
came from: a key that vouches for itself is no root of trust. :func:`verify` checks the
signature and says in the claim ``platform_key_trusted`` whether the caller trusts the key (a
PEM public key among the collateral, e.g. ``veritee verify --platform-key``, or its SHA-256 key
id in ``trust``). The baseline refuses evidence whose key is not trusted
(``platform_key_not_trusted``); a policy trusts keys only through its own
``platforms.simulated.platform_keys``. Never by default.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee._frozen import maker
from veritee.collateral import Collateral
from veritee.errors import MalformedError, UsageError, VerificationError
from veritee.evidence._reader import Reader
from veritee.evidence.claims import VerifiedEvidence
from veritee.profiles import Profile

__all__ = [
    "MAGIC",
    "SimulatedReport",
    "detect",
    "parse_claims",
    "sign_report",
    "trusted_key_ids",
    "verify",
]

MAGIC = b"VTSIMEV1"
VERSION = 1
FLAG_DEBUG = 0x1
MEASUREMENT_SIZE = 48
REPORT_DATA_SIZE = 64
MAX_KEY_LEN = 256
MAX_SIG_LEN = 128

PROFILE_CODES: dict[int, Profile] = {
    0: Profile.DEVELOPMENT,
    1: Profile.TESTING,
    2: Profile.STAGING,
    3: Profile.PRODUCTION,
}
CODE_OF_PROFILE = {p: c for c, p in PROFILE_CODES.items()}
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class SimulatedReport:
    version: int
    debug: bool
    profile: Profile
    measurement: bytes
    report_data: bytes
    platform_key_der: bytes
    signed: bytes
    signature: bytes

    @property
    def platform_key_id(self) -> str:
        """SHA-256 (hex) of the platform key's SPKI DER: what policies list."""
        return hashlib.sha256(self.platform_key_der).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes) -> SimulatedReport:
        """The report in ``data``; MalformedError naming the field (and offset) that is wrong.

        A well-formed report is read by one ``struct`` unpack of its fixed head
        (:func:`_well_formed`); anything else by the field-by-field reader, which says what is
        wrong (the same report either way)."""
        if type(data) is bytes:
            report = _well_formed(data)
            if report is not None:
                return report
        return cls._read(data)

    @classmethod
    def _read(cls, data: bytes) -> SimulatedReport:
        """:meth:`from_bytes` field by field (every read bounds-checked and named)."""
        r = Reader(data)
        if r.bytes(8, "magic") != MAGIC:
            raise MalformedError("not simulated evidence", field="magic", offset=0)
        version = r.u16("version")
        if version != VERSION:
            raise MalformedError(
                f"unsupported simulated evidence version {version}", field="version", offset=8
            )
        flags = r.u16("flags")
        if flags & ~FLAG_DEBUG:
            raise MalformedError("unknown flag bits set", field="flags", offset=0x0A)
        code = r.u8("profile")
        if code not in PROFILE_CODES:
            raise MalformedError(f"unknown profile code {code}", field="profile", offset=0x0C)
        if r.bytes(3, "reserved") != b"\0\0\0":
            raise MalformedError("reserved bytes are not zero", field="reserved", offset=0x0D)
        measurement = r.bytes(MEASUREMENT_SIZE, "measurement")
        report_data = r.bytes(REPORT_DATA_SIZE, "report_data")
        key_len = r.u16("key_len")
        if not 0 < key_len <= MAX_KEY_LEN:
            raise MalformedError(
                f"platform key length {key_len} out of range", field="key_len", offset=0x80
            )
        key_der = r.bytes(key_len, "platform_key")
        signed_end = r.offset
        sig_len = r.u16("sig_len")
        if not 0 < sig_len <= MAX_SIG_LEN:
            raise MalformedError(
                f"signature length {sig_len} out of range", field="sig_len", offset=signed_end
            )
        signature = r.bytes(sig_len, "signature")
        if r.remaining:
            raise MalformedError(f"{r.remaining} trailing bytes", field="trailing", offset=r.offset)
        return cls(
            version=version,
            debug=bool(flags & FLAG_DEBUG),
            profile=PROFILE_CODES[code],
            measurement=measurement,
            report_data=report_data,
            platform_key_der=key_der,
            signed=bytes(data[:signed_end]),
            signature=signature,
        )

    def claims(self, key_id: str | None = None) -> dict[str, Any]:
        """The report's claims; ``key_id``: :attr:`platform_key_id` when the caller has it."""
        return {
            "platform": "simulated",
            "version": self.version,
            "measurement": self.measurement.hex(),
            "report_data": self.report_data.hex(),
            "debug": self.debug,
            "tcb_status": None,
            "profile": self.profile.value,
            "platform_key": self.platform_key_id if key_id is None else key_id,
        }


#: The fixed head of a report: magic, version, flags, profile, reserved, measurement,
#: report data, key length (0x00-0x81).
_HEAD = struct.Struct("<8sHHB3s48s64sH")
_make_report = maker(SimulatedReport)


def _well_formed(data: bytes) -> SimulatedReport | None:
    """The report of ``data`` when every field is as :meth:`SimulatedReport.from_bytes` requires
    (exact lengths, no trailing bytes), read in one unpack; None for anything else (the reader
    then says what is wrong)."""
    head = _HEAD.size
    if len(data) < head + 2:
        return None
    magic, version, flags, code, reserved, measurement, report_data, key_len = _HEAD.unpack_from(
        data
    )
    if (
        magic != MAGIC or version != VERSION or flags & ~FLAG_DEBUG or code not in PROFILE_CODES
        or reserved != b"\0\0\0" or not 0 < key_len <= MAX_KEY_LEN
    ):  # fmt: skip
        return None
    signed_end = head + key_len
    sig_len = int.from_bytes(data[signed_end : signed_end + 2], "little")
    if not 0 < sig_len <= MAX_SIG_LEN or len(data) != signed_end + 2 + sig_len:
        return None
    return _make_report(
        version, bool(flags & FLAG_DEBUG), PROFILE_CODES[code], measurement, report_data,
        data[head:signed_end], data[:signed_end], data[signed_end + 2 :],
    )  # fmt: skip


def detect(data: bytes) -> bool:
    return data[:8] == MAGIC


def parse_claims(data: bytes) -> dict[str, Any]:
    return SimulatedReport.from_bytes(data).claims()


_ECDSA_SHA384 = ec.ECDSA(hashes.SHA384())


@functools.lru_cache(maxsize=256)
def _load_key(der: bytes) -> ec.EllipticCurvePublicKey:
    """Parse (and cache: a fleet has few platform keys) a P-384 SubjectPublicKeyInfo."""
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise MalformedError(
            "platform key is not a valid SubjectPublicKeyInfo", field="platform_key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise MalformedError("platform key must be ECDSA P-384", field="platform_key")
    return key


def trusted_key_ids(collateral: Collateral, trust: Any = None) -> frozenset[str]:
    """The platform key ids (SHA-256 of SPKI DER) the caller trusts: the PEM public keys among
    ``collateral`` and the hex ids in ``trust`` (an iterable of str, or None)."""
    ids = {hashlib.sha256(k.public_bytes(*_SPKI)).hexdigest() for k in collateral.public_keys}
    if trust is not None:
        if isinstance(trust, str | bytes) or not hasattr(trust, "__iter__"):
            raise UsageError("simulated trust must be an iterable of platform key ids (hex)")
        ids |= {str(t).lower() for t in trust}
    return frozenset(ids)


def verify(
    data: bytes, *, collateral: Collateral, at: datetime, trust: Any = None
) -> VerifiedEvidence:
    """Check the report's signature with the key it carries. Raises on any failure.

    1. parse (MalformedError names the field);
    2. the platform key is a P-384 SPKI;
    3. the ECDSA-P384/SHA-384 signature covers every byte before SIG_LEN;
    4. claim ``platform_key_trusted``: the key is one of :func:`trusted_key_ids`.
    """
    report = SimulatedReport.from_bytes(data)
    key = _load_key(report.platform_key_der)
    try:
        key.verify(report.signature, report.signed, _ECDSA_SHA384)
    except InvalidSignature:
        raise VerificationError(
            "simulated evidence signature does not verify", code="signature_invalid"
        ) from None
    key_id = report.platform_key_id
    claims = report.claims(key_id)
    claims["platform_key_trusted"] = key_id in trusted_key_ids(collateral, trust)
    return VerifiedEvidence(format="simulated", claims=claims, verified_at=at)


def sign_report(
    key: ec.EllipticCurvePrivateKey,
    *,
    measurement: bytes,
    report_data: bytes,
    profile: Profile,
    debug: bool,
) -> bytes:
    """Produce simulated evidence (the attester side; used by the simulated platform driver)."""
    if len(measurement) != MEASUREMENT_SIZE:
        raise ValueError("measurement must be 48 bytes")
    if len(report_data) != REPORT_DATA_SIZE:
        raise ValueError("report_data must be 64 bytes")
    key_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = b"".join(
        [
            MAGIC,
            VERSION.to_bytes(2, "little"),
            (FLAG_DEBUG if debug else 0).to_bytes(2, "little"),
            bytes([CODE_OF_PROFILE[profile]]),
            b"\0\0\0",
            measurement,
            report_data,
            len(key_der).to_bytes(2, "little"),
            key_der,
        ]
    )
    sig = key.sign(body, ec.ECDSA(hashes.SHA384()))
    return body + len(sig).to_bytes(2, "little") + sig
