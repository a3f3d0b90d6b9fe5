"""Object identifiers veritee puts in admission certificates and the key broker's certificate.

They live under ``2.25.<UUID>`` (ITU-T X.667: an OID any party may allocate without a registry).
"""

from __future__ import annotations

from cryptography.x509 import ObjectIdentifier

__all__ = [
    "ADMISSION_CLAIMS",
    "ARC",
    "MEASUREMENT",
    "PLATFORM",
    "PROFILE",
    "RELEASE_SIGNING",
    "decode_utf8_string",
    "encode_utf8_string",
]

ARC = "2.25.33650568122679349865764103694628722319"

#: UTF8String: the attested measurement (hex) of the certified workload.
MEASUREMENT = ObjectIdentifier(ARC + ".1")
#: UTF8String: the platform name (sev-snp, tdx, sgx, nitro, tpm, simulated).
PLATFORM = ObjectIdentifier(ARC + ".2")
#: UTF8String: the logging profile the workload attested (development ... production).
PROFILE = ObjectIdentifier(ARC + ".3")
#: UTF8String: JSON of selected claims (platform-specific), for relying parties.
ADMISSION_CLAIMS = ObjectIdentifier(ARC + ".4")
#: Extended key usage of the key broker's certificate: it signs release envelopes and
#: freshness-counter answers (veritee.domain.issue_broker_certificate).
RELEASE_SIGNING = ObjectIdentifier(ARC + ".5")


def encode_utf8_string(value: str) -> bytes:
    """DER UTF8String (tag 0x0C) holding ``value``: the body of our custom extensions."""
    raw = value.encode("utf-8")
    n = len(raw)
    if n < 0x80:
        length = bytes([n])
    else:
        body = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(body)]) + body
    return b"\x0c" + length + raw


def decode_utf8_string(der: bytes) -> str:
    """Inverse of :func:`encode_utf8_string`; raises ValueError on anything else."""
    if len(der) < 2 or der[0] != 0x0C:
        raise ValueError("not a DER UTF8String")
    first = der[1]
    if first < 0x80:
        n, start = first, 2
    else:
        k = first & 0x7F
        if k == 0 or k > 4 or len(der) < 2 + k:
            raise ValueError("bad DER length")
        n, start = int.from_bytes(der[2 : 2 + k], "big"), 2 + k
    if len(der) != start + n:
        raise ValueError("DER UTF8String length mismatch")
    return der[start:].decode("utf-8")
