"""Request and response bodies of the service (pydantic v2, strict, size-bounded)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from veritee.collateral import Collateral
from veritee.errors import MalformedError

__all__ = [
    "MAX_DB_INT",
    "AttestRequest",
    "CertifiedReleaseRequest",
    "CertifiedSealingKeyRequest",
    "CertifyRequest",
    "CollateralBlob",
    "DryRunRequest",
    "ReleaseRequest",
    "RevocationRequest",
    "SealingKeyRequest",
    "SecretDryRunRequest",
    "SecretPut",
    "TpmActivateRequest",
    "TpmEnrollRequest",
    "decode_b64",
    "decode_hex",
]

MAX_B64 = 400_000
#: The largest integer the database stores (a signed 64-bit column): versions, positions.
MAX_DB_INT = 2**63 - 1


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
    public_key: str | None = Field(
        None, max_length=4000, description="PEM SubjectPublicKeyInfo bound in report data"
    )
    collateral: list[CollateralBlob] = Field(default_factory=list, max_length=32)
    audience: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        pattern=r"^[\x21-\x7e]+$",
        description="who the EAR token is for (its aud); default: this domain's relying parties "
        "(aud = the service's issuer)",
    )
    policy: str | None = Field(
        None, min_length=1, max_length=200,
        description="the named appraisal policy to appraise under (default: the first policy in "
        "force that admits the evidence)",
    )  # fmt: skip

    def evidence_bytes(self) -> bytes:
        return decode_b64(self.evidence, "evidence")

    def nonce_bytes(self) -> bytes:
        return decode_hex(self.nonce, "nonce")

    def attester_collateral(self) -> Collateral | None:
        """What the attester sent (its provenance is decided by :meth:`ServiceContext.appraise`)."""
        if not self.collateral:
            return None
        return Collateral.from_blobs(
            (c.name, decode_b64(c.data, f"collateral {c.name}")) for c in self.collateral
        )


class CertifyRequest(AttestRequest):
    public_key: str = Field(max_length=4000, description="the workload key to certify, PEM SPKI")
    key_store: dict[str, Any] | None = Field(
        None,
        description='the key store holding the key: {"id": 32 hex digits, "generation": int}, '
        "bound in the report data (veritee.binding); a generation lower than one certified "
        "before for that store is refused (key_superseded)",
    )


class PolicyRollback(_Body):
    """Install version ``version`` of appraisal policy ``name`` again, as its next version."""

    name: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1, le=MAX_DB_INT)


class DryRunRequest(_Body):
    policy: str = Field(
        max_length=1024 * 1024, description="draft policy, YAML or JSON (need not be signed)"
    )
    evidence: str = Field(max_length=MAX_B64)
    format: str = Field("auto", max_length=20)
    at: str | None = Field(None, description="ISO-8601 verification time; default now")
    collateral: list[CollateralBlob] = Field(default_factory=list, max_length=32)


# --- key broker ---------------------------------------------------------------------------


class SecretPut(BaseModel):
    """A new version: the value (base64) and its release policy (JSON object)."""

    model_config = ConfigDict(extra="forbid")
    value: str = Field(description="the secret, base64")
    policy: dict[str, Any] | None = Field(default=None, description="release policy (JSON)")
    keep_old_policies: bool = Field(
        default=False,
        description="rotation only: older versions stay releasable under their own release "
        "policies alone (by default a release of any version must also satisfy the newest "
        "version's policy)",
    )


class SecretPolicyPut(BaseModel):
    """A new release policy for a secret's value as it is (stored as a new version)."""

    model_config = ConfigDict(extra="forbid")
    policy: dict[str, Any] = Field(description="release policy (JSON)")


class SecretDryRunRequest(BaseModel):
    """What a release of a secret would decide, for stored evidence or claims."""

    model_config = ConfigDict(extra="forbid")
    evidence: str | None = Field(default=None, description="stored evidence, base64")
    format: str = "auto"
    at: dt.datetime | None = Field(default=None, description="appraise as of this time")
    claims: dict[str, Any] | None = Field(default=None, description="or: claims to test directly")
    policy: dict[str, Any] | None = Field(default=None, description="test this policy instead")


class ReleaseRequest(BaseModel):
    """Release with fresh evidence binding the nonce and the ephemeral key."""

    model_config = ConfigDict(extra="forbid")
    evidence: str = Field(description="evidence, base64")
    nonce: str = Field(description="nonce from /v1/challenge, hex")
    format: str = "auto"
    public_key: str | dict[str, Any] = Field(
        description="ephemeral key: base64 X25519 (HPKE) or a JWK (EC/RSA: JWE)"
    )
    version: int | None = Field(
        default=None, ge=1, le=MAX_DB_INT, description="a given version (default: latest)"
    )


class SealingKeyRequest(_Body):
    """The domain-released sealing key, for fresh evidence binding the nonce and the ephemeral
    key (``POST /v1/sealing-key``)."""

    evidence: str = Field(max_length=MAX_B64, description="evidence, base64")
    nonce: str = Field(min_length=2, max_length=128, description="nonce from /v1/challenge, hex")
    format: str = Field("auto", max_length=20)
    public_key: str | dict[str, Any] = Field(
        description="ephemeral key: base64 X25519 (HPKE) or a JWK (EC/RSA: JWE)"
    )
    policy: str | None = Field(
        None, min_length=1, max_length=200,
        description="the named appraisal policy to appraise under (default: the first policy in "
        "force that admits the evidence; its name names the released key)",
    )  # fmt: skip


class CertifiedSealingKeyRequest(_Body):
    """The domain-released sealing key for a workload holding a valid admission certificate
    (``POST /v1/sealing-key/certified``)."""

    certificate: str = Field(
        max_length=8000, description="the workload's admission certificate, PEM"
    )
    nonce: str = Field(min_length=2, max_length=128, description="nonce from /v1/challenge, hex")
    public_key: str | dict[str, Any] = Field(
        description="ephemeral key: base64 X25519 (HPKE) or a JWK (EC/RSA: JWE)"
    )
    signature: str = Field(
        max_length=400,
        description="base64 ECDSA signature by the certificate's key over veritee.keybroker."
        "release.possession_message('veritee:sealing-key', nonce, SPKI of public_key)",
    )
    policy: str | None = Field(
        None, min_length=1, max_length=200,
        description="the named appraisal policy to appraise under (default: the first policy in "
        "force that admits the certificate's claims; its name names the released key)",
    )  # fmt: skip


class CertifiedReleaseRequest(BaseModel):
    """Release to a workload that holds a valid admission certificate of this domain."""

    model_config = ConfigDict(extra="forbid")
    certificate: str = Field(
        max_length=8000, description="the workload's admission certificate, PEM"
    )
    nonce: str = Field(max_length=128, description="nonce from /v1/challenge, hex")
    public_key: str | dict[str, Any] = Field(
        description="ephemeral key: base64 X25519 (HPKE) or a JWK (EC/RSA: JWE)"
    )
    signature: str = Field(
        max_length=400,
        description="base64 ECDSA signature by the certificate's key over "
        "veritee.keybroker.release.possession_message(name, nonce, SPKI of public_key)",
    )
    version: int | None = Field(
        default=None, ge=1, le=MAX_DB_INT, description="a given version (default: latest)"
    )


class TpmEnrollRequest(_Body):
    """An EK certificate (DER), the chain the TPM keeps in NV, the EK's and the AK's TPMT_PUBLIC:
    all base64."""

    ek_certificate: str = Field(max_length=12_000)
    ek_chain: list[str] = Field(default_factory=list, max_length=5)
    ek_public: str = Field(max_length=2_000)
    ak_public: str = Field(max_length=2_000)


class TpmActivateRequest(_Body):
    nonce: str = Field(min_length=2, max_length=128, description="the enrollment nonce, hex")
    ticket: str = Field(max_length=2_000)
    secret: str = Field(max_length=200, description="what TPM2_ActivateCredential returned, base64")
    ak_public: str = Field(max_length=2_000)
    ek_certificate: str = Field(max_length=12_000)

    def nonce_bytes(self) -> bytes:
        return decode_hex(self.nonce, "nonce")


class RevocationRequest(BaseModel):
    """Revoke admission certificates: one serial, or every one of a measurement."""

    model_config = ConfigDict(extra="forbid")
    serial: str | None = Field(default=None, max_length=42, description="certificate serial, hex")
    measurement: str | None = Field(default=None, max_length=200, description="measurement, hex")
    reason: str = Field(default="", max_length=400, description="why (kept in the audit log)")


class RefValuesAddRequest(BaseModel):
    """Register a CoRIM's reference values in a named set (issue 17)."""

    model_config = ConfigDict(extra="forbid")
    set: str = Field(min_length=1, max_length=64, description="the set's name ([a-z0-9._-])")
    corim: str = Field(min_length=1, max_length=1_500_000, description="the CoRIM / CoMID, base64")
    file_name: str = Field(
        default="", max_length=400, description="where it came from (provenance)"
    )
    key: str | None = Field(default=None, max_length=20_000, description="signer's key: PEM or JWK")
    trust_anchor: str | None = Field(
        default=None,
        max_length=50_000,
        description="CA certificate(s), PEM, the CoRIM's x5chain must lead to",
    )
    scheme: str | None = Field(
        default=None, max_length=32, description="refuse other schemes' profiles"
    )
    allow_unsigned: bool = Field(
        default=False, description="register an unsigned CoRIM (admin vouches)"
    )
    expires_at: dt.datetime | None = Field(default=None, description="stop counting at (UTC)")


class RefValuesWithdrawRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=400, description="why (kept in the audit log)")
