"""The real GCE vTPM sample (a go-tpm-tools attestation, read from ../shared/testvectors/tpm,
never copied) and a protobuf encoder for mutating it: :func:`decode_fields` splits a message
into ``(field number, value)`` pairs with veritee's own reader, :func:`encode_fields` is its
inverse, so a test changes one field and re-encodes, reaching the check it is meant for.

Tests using the sample skip when :data:`SAMPLE` is absent (``pytest.mark.skipif(not
SAMPLE.is_file(), ...)``).

Example::

    top = decode_fields(sample_bytes())
    claims = verify_claims(encode_fields(top))  # unchanged: verifies at AT under sample_roots()
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from tests.conftest import TESTVECTORS

from veritee.collateral import Collateral
from veritee.evidence import tpm

__all__ = [
    "AT",
    "SAMPLE",
    "decode_fields",
    "encode_fields",
    "sample_bytes",
    "sample_roots",
    "verify_claims",
]

#: The GCE sample (Container-Optimized OS 85, nonce 9009).
SAMPLE = TESTVECTORS / "tpm" / "gotpmtools_gce-cos-85-nonce9009.pb"
#: A time inside the sample's certificates' windows.
AT = datetime(2026, 1, 1, tzinfo=UTC)


@functools.cache
def sample_bytes() -> bytes:
    """The sample's bytes (read once)."""
    return SAMPLE.read_bytes()


@functools.cache
def sample_roots() -> Collateral:
    """The sample's AK roots (the testvectors' tpm folder) as collateral."""
    return Collateral.from_paths([TESTVECTORS / "tpm"])


# --- a protobuf encoder for the mutations (the inverse of tpm._fields) --------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def encode_fields(fields: list[tuple[int, int | bytes]]) -> bytes:
    """A protobuf message of ``(field number, varint or length-delimited bytes)`` pairs."""
    out = bytearray()
    for number, value in fields:
        if isinstance(value, int):
            out += _varint(number << 3) + _varint(value)
        else:
            out += _varint(number << 3 | 2) + _varint(len(value)) + value
    return bytes(out)


def decode_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """``data``'s fields, as veritee's TPM verifier reads them (the inverse of :func:`encode_fields`)."""
    return list(tpm._fields(data, "test"))


def verify_claims(
    data: bytes, at: datetime = AT, collateral: Collateral | None = None
) -> dict[str, Any]:
    """The claims of ``data`` verified as a TPM attestation at ``at`` (default under :func:`sample_roots`)."""
    return tpm.verify(
        data, collateral=sample_roots() if collateral is None else collateral, at=at
    ).claims
