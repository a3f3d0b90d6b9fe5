"""Request and response bodies of the service (pydantic v2, strict, size-bounded)."""

from __future__ import annotations

import base64
import binascii

from pydantic import BaseModel, ConfigDict, Field

from veritee.collateral import Collateral
from veritee.errors import MalformedError

__all__ = [
    "AttestRequest",
    "CertifyRequest",
    "CollateralBlob",
    "DryRunRequest",
    "decode_b64",
    "decode_hex",
]

MAX_B64 = 400_000


def decode_b64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:
            pad = "=" * (-len(value) % 4)
            return base64.urlsafe_b64decode(value + pad)
        except (binascii.Error, ValueError):
            raise MalformedError(f"{field} is not base64", field=field) from None


def decode_hex(value: str, field: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise MalformedError(f"{field} is not hex", field=field) from None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CollateralBlob(_Body):
    name: str = Field(max_length=200)
    data: str = Field(max_length=MAX_B64, description="base64")


class AttestRequest(_Body):
    evidence: str = Field(max_length=MAX_B64, description="evidence bytes, base64")
    nonce: str = Field(min_length=2, max_length=128, description="the challenge nonce, hex")
    format: str = Field("auto", max_length=20)
    public_key: str | None = Field(None, max_length=4000, description="PEM SubjectPublicKeyInfo bound in report data")
    collateral: list[CollateralBlob] = Field(default_factory=list, max_length=32)

    def evidence_bytes(self) -> bytes:
        return decode_b64(self.evidence, "evidence")

    def nonce_bytes(self) -> bytes:
        return decode_hex(self.nonce, "nonce")

    def extra_collateral(self) -> Collateral | None:
        if not self.collateral:
            return None
        return Collateral.from_blobs((c.name, decode_b64(c.data, f"collateral {c.name}")) for c in self.collateral)


class CertifyRequest(AttestRequest):
    public_key: str = Field(max_length=4000, description="the workload key to certify, PEM SPKI")


class DryRunRequest(_Body):
    policy: str = Field(max_length=1024 * 1024, description="draft policy, YAML or JSON (need not be signed)")
    evidence: str = Field(max_length=MAX_B64)
    format: str = Field("auto", max_length=20)
    at: str | None = Field(None, description="ISO-8601 verification time; default now")
    collateral: list[CollateralBlob] = Field(default_factory=list, max_length=32)


