"""How report data binds a nonce and a workload key (DESIGN.md, flow step 2).

``report_data = SHA-512(b"veritee-v1" || nonce || SHA-256(SubjectPublicKeyInfo DER))``

The 64-byte result is exactly the report-data field of SEV-SNP, TDX, SGX and the simulated
platform. For Nitro the same 64 bytes go into the document's ``user_data``.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

__all__ = ["DOMAIN_TAG", "report_data_for", "spki_der"]

DOMAIN_TAG = b"veritee-v1"


def spki_der(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def report_data_for(nonce: bytes, spki: bytes) -> bytes:
    """The 64 bytes a workload puts in its report to bind ``nonce`` and its key ``spki`` (DER)."""
    return hashlib.sha512(DOMAIN_TAG + nonce + hashlib.sha256(spki).digest()).digest()
