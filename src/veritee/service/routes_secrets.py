"""Key broker endpoints: secrets at rest (admin) and attested release (workloads).

Admin (bearer credential): ``PUT/GET/DELETE /v1/admin/secrets/{name}``, ``GET /v1/admin/secrets``,
``POST /v1/admin/secrets/{name}/rotate`` and ``POST /v1/admin/secrets/{name}/dry-run``.
Workload: ``POST /v1/secrets/{name}/release`` with fresh evidence binding a nonce from
``/v1/challenge`` and an ephemeral public key; the secret comes back encrypted to that key.

The release decision, the consumption of the nonce and the audit record (``secret.release`` or
``secret.deny`` with every reason) are one transaction: no release exists without its audit
record, and the secret is encrypted to the workload only after that transaction committed.
Secret values never reach a log, an error or the audit log (only SHA-256 digests of sealed data).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from veritee.errors import (
    MalformedError,
    NonceError,
    NotFoundError,
    OversizedError,
    VerificationError,
)
from veritee.evidence.claims import Reason
from veritee.keybroker.kek import KEK_ENV, EnvKek, FileKek, KeyEncryptionKey
from veritee.keybroker.policy import ReleaseDecision, ReleasePolicy, dry_run, evaluate, parse_policy
from veritee.keybroker.release import parse_recipient, possession_message, seal_envelope
from veritee.keybroker.vault import MAX_SECRET_BYTES, SecretBytes, open_blob, seal, validate_name
from veritee.sdk.admission import AdmissionInfo
from veritee.service.auth import require_admin
from veritee.service.context import ServiceContext
from veritee.service.schemas import decode_hex

__all__ = [
    "CertifiedReleaseRequest",
    "ReleaseRequest",
    "SecretPut",
    "kek_for",
    "release_router",
    "release_secret",
    "router",
]

router = APIRouter(tags=["secrets"])
#: The workload-facing release route, on its own so the app can match it before the admin routes.
release_router = APIRouter(tags=["secrets"])


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def kek_for(request: Request) -> KeyEncryptionKey:
    """The domain's KEK: ``$VERITEE_KEK`` when set, else ``<data>/secrets.kek`` (created once)."""
    state = request.app.state
    kek: KeyEncryptionKey | None = getattr(state, "keybroker_kek", None)
    if kek is None:
        ctx = _ctx(request)
        kek = EnvKek(KEK_ENV) if os.environ.get(KEK_ENV) else FileKek.in_data_dir(ctx.domain.path)
        state.keybroker_kek = kek
    return kek


def _b64(value: str, field: str, limit: int) -> bytes:
    if len(value) > limit * 4 // 3 + 8:
        raise OversizedError(f"{field} is larger than {limit} bytes", field=field)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedError(f"{field} is not base64", field=field) from None


class SecretPut(BaseModel):
    """A new version: the value (base64) and its release policy (JSON object)."""

    model_config = ConfigDict(extra="forbid")
    value: str = Field(description="the secret, base64")
    policy: dict[str, Any] | None = Field(default=None, description="release policy (JSON)")


class DryRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    evidence: str | None = Field(default=None, description="stored evidence, base64")
    format: str = "auto"
    at: dt.datetime | None = Field(default=None, description="appraise as of this time")
    claims: dict[str, Any] | None = Field(default=None, description="or: claims to test directly")
    policy: dict[str, Any] | None = Field(default=None, description="test this policy instead")


class ReleaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    evidence: str = Field(description="evidence, base64")
    nonce: str = Field(description="nonce from /v1/challenge, hex")
    format: str = "auto"
    public_key: str | dict[str, Any] = Field(
        description="ephemeral key: base64 X25519 (HPKE) or a JWK (EC/RSA: JWE)"
    )
    version: int | None = Field(default=None, description="a given version (default: latest)")


class CertifiedReleaseRequest(BaseModel):
    """Release to a workload that holds a valid admission certificate of this domain."""

    model_config = ConfigDict(extra="forbid")
    certificate: str = Field(max_length=8000, description="the workload's admission certificate, PEM")
    nonce: str = Field(max_length=128, description="nonce from /v1/challenge, hex")
    public_key: str | dict[str, Any] = Field(
        description="ephemeral key: base64 X25519 (HPKE) or a JWK (EC/RSA: JWE)"
    )
    signature: str = Field(
        max_length=400,
        description="base64 ECDSA signature by the certificate's key over "
        "veritee.keybroker.release.possession_message(name, nonce, SPKI of public_key)",
    )
    version: int | None = Field(default=None, description="a given version (default: latest)")


def _policy_text(policy: dict[str, Any]) -> str:
    parsed = parse_policy(policy)
    return json.dumps(parsed.to_json(), sort_keys=True, separators=(",", ":"))


class _VersionTaken(Exception):
    def __init__(self, version: int) -> None:
        self.version = version


def _store(
    request: Request, name: str, value: bytes, policy_text: str, *, kind: str
) -> dict[str, Any]:
    """Seal ``value`` as the next version and audit it, in one transaction.

    The version number is bound into the encryption, but the storage assigns it (numbers go on
    after deletions). So seal for the expected number, and if the storage assigned another,
    roll back and seal again for that one.
    """
    ctx = _ctx(request)
    kek = kek_for(request)
    policy_digest = hashlib.sha256(policy_text.encode()).hexdigest()
    guess: int | None = None
    for _attempt in range(8):
        now = ctx.now()
        try:
            with ctx.storage.transaction() as tx:
                if guess is None:
                    current = tx.secret_version(name)
                    guess = (current.version if current else 0) + 1
                sealed = seal(kek, name, guess, value)
                stored = tx.put_secret_version(
                    name=name,
                    policy=policy_text,
                    kek_id=sealed.kek_id,
                    wrapped_dek=sealed.wrapped_dek,
                    ciphertext=sealed.value_blob(),
                    now=now,
                )
                if stored != guess:
                    raise _VersionTaken(stored)
                tx.append_audit(
                    kind=kind,
                    actor="admin",
                    subject=name,
                    decision=None,
                    details={
                        "version": stored,
                        "sealed_sha256": sealed.digest,
                        "kek_id": sealed.kek_id,
                        "policy_sha256": policy_digest,
                    },
                    now=now,
                )
        except _VersionTaken as taken:
            guess = taken.version
            continue
        return {
            "name": name,
            "version": stored,
            "policy_sha256": policy_digest,
            "kek_id": kek.kek_id,
        }
    raise VerificationError("concurrent writes of this secret; retry", code="conflict")


@router.put("/v1/admin/secrets/{name:path}", summary="Store a new version of a secret")
def put_secret(
    name: str, body: SecretPut, request: Request, _: str = Depends(require_admin)
) -> dict[str, Any]:
    validate_name(name)
    if body.policy is None:
        raise MalformedError("a release policy is required", field="policy")
    value = _b64(body.value, "value", MAX_SECRET_BYTES)
    return _store(request, name, value, _policy_text(body.policy), kind="secret.put")


@router.post("/v1/admin/secrets/{name:path}/rotate", summary="New value, same (or new) policy")
def rotate_secret(
    name: str, body: SecretPut, request: Request, _: str = Depends(require_admin)
) -> dict[str, Any]:
    validate_name(name)
    ctx = _ctx(request)
    with ctx.storage.transaction(readonly=True) as tx:
        current = tx.secret_version(name)
    if current is None:
        raise NotFoundError(f"no secret named {name!r}", code="secret_unknown")
    policy_text = _policy_text(body.policy) if body.policy is not None else current.policy
    value = _b64(body.value, "value", MAX_SECRET_BYTES)
    return _store(request, name, value, policy_text, kind="secret.rotate")


@router.post("/v1/admin/secrets/{name:path}/dry-run", summary="What a release would decide")
def dry_run_secret(
    name: str, body: DryRunRequest, request: Request, _: str = Depends(require_admin)
) -> dict[str, Any]:
    validate_name(name)
    ctx = _ctx(request)
    if body.policy is not None:
        policy = parse_policy(body.policy)
    else:
        with ctx.storage.transaction(readonly=True) as tx:
            current = tx.secret_version(name)
        if current is None:
            raise NotFoundError(f"no secret named {name!r}", code="secret_unknown")
        policy = parse_policy(current.policy)
    if body.claims is not None:
        decision = dry_run(policy, body.claims)
        return {"name": name, **decision.to_json(), "claims": body.claims}
    if body.evidence is None:
        raise MalformedError("give evidence (base64) or claims", field="evidence")
    data = _b64(body.evidence, "evidence", ctx.settings.max_body_bytes)
    appraisal = ctx.appraise(data, at=body.at or ctx.now(), format=body.format)
    claims = appraisal.claims or {}
    decision = dry_run(
        policy,
        claims,
        appraisal_accepted=appraisal.decision.accepted,
        appraisal_reasons=appraisal.decision.reasons,
    )
    return {"name": name, **decision.to_json(), "claims": appraisal.claims}


@router.get("/v1/admin/secrets", summary="Secrets and their versions (never values)")
def list_secrets(request: Request, _: str = Depends(require_admin)) -> dict[str, Any]:
    ctx = _ctx(request)
    with ctx.storage.transaction(readonly=True) as tx:
        rows = tx.list_secrets()
    return {
        "secrets": [
            {
                "name": r.name,
                "latest_version": r.latest_version,
                "versions": r.versions,
                "created_at": r.created_at.isoformat(),
                "updated_at": r.updated_at.isoformat(),
            }
            for r in rows
        ]
    }


@router.get("/v1/admin/secrets/{name:path}", summary="A secret's metadata and policy")
def get_secret_info(name: str, request: Request, _: str = Depends(require_admin)) -> dict[str, Any]:
    validate_name(name)
    ctx = _ctx(request)
    with ctx.storage.transaction(readonly=True) as tx:
        current = tx.secret_version(name)
    if current is None:
        raise NotFoundError(f"no secret named {name!r}", code="secret_unknown")
    return {
        "name": name,
        "version": current.version,
        "kek_id": current.kek_id,
        "created_at": current.created_at.isoformat(),
        "policy": json.loads(current.policy),
    }


@router.delete("/v1/admin/secrets/{name:path}", summary="Delete every version of a secret")
def delete_secret(name: str, request: Request, _: str = Depends(require_admin)) -> dict[str, Any]:
    validate_name(name)
    ctx = _ctx(request)
    now = ctx.now()
    with ctx.storage.transaction() as tx:
        count = tx.delete_secret(name, now=now)
        if count == 0:
            raise NotFoundError(f"no secret named {name!r}", code="secret_unknown")
        tx.append_audit(
            kind="secret.delete",
            actor="admin",
            subject=name,
            decision=None,
            details={"versions": count},
            now=now,
        )
    return {"name": name, "deleted_versions": count}


# --- release --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _stored_policy(text: str) -> ReleasePolicy:
    """A stored release policy, parsed once per distinct text (parsed policies are frozen)."""
    return parse_policy(text)


def release_secret(
    ctx: ServiceContext,
    kek: KeyEncryptionKey,
    *,
    name: str,
    version: int | None,
    nonce: bytes,
    nonce_purpose: str,
    claims: dict[str, Any] | None,
    accepted: bool,
    appraisal_reasons: Sequence[Reason],
    audit: dict[str, Any],
) -> tuple[SecretBytes, int]:
    """Decide, consume the nonce (if any) and audit in ONE transaction; return the value.

    Raises :class:`NonceError`, :class:`NotFoundError` (``secret_unknown``) or
    :class:`VerificationError` (``release_denied`` with every reason, ``secret_tampered``);
    each of these outcomes is in the audit log as ``secret.deny``.
    """
    now = ctx.now()
    base = audit
    subject = name
    try:
        with ctx.storage.transaction() as tx:
            if nonce:
                tx.consume_nonce(nonce, now=now, purpose=nonce_purpose)
            stored = tx.secret_version(name, version)
            reasons: list[Reason] = []
            value: SecretBytes | None = None
            if stored is None:
                reasons.append(Reason("secret_unknown", f"no secret named {name!r}"))
            else:
                decision: ReleaseDecision
                if not accepted or claims is None:
                    decision = dry_run(
                        _stored_policy(stored.policy),
                        claims or {},
                        appraisal_accepted=False,
                        appraisal_reasons=appraisal_reasons,
                    )
                else:
                    decision = evaluate(_stored_policy(stored.policy), claims)
                reasons.extend(decision.reasons)
                if decision.allowed:
                    try:
                        value = open_blob(
                            kek,
                            name,
                            stored.version,
                            stored.ciphertext,
                            columns=(stored.kek_id, stored.wrapped_dek),
                        )
                    except VerificationError as e:
                        reasons.append(Reason(e.code, e.message))
            details = base | {
                "version": None if stored is None else stored.version,
                "release_reasons": [r.to_json() for r in reasons],
            }
            released = value is not None and stored is not None
            tx.append_audit(
                kind="secret.release" if released else "secret.deny",
                actor="workload",
                subject=subject,
                decision="accept" if released else "reject",
                details=details,
                now=now,
            )
    except NonceError as e:
        with ctx.storage.transaction() as tx:
            tx.append_audit(
                kind="secret.deny",
                actor="workload",
                subject=subject,
                decision="reject",
                details=base | {"release_reasons": [{"code": e.code, "message": e.message}]},
                now=now,
            )
        ctx.metrics.inc("veritee_releases_total", "Secret releases", outcome="nonce_rejected")
        raise
    if value is None or stored is None:
        ctx.metrics.inc("veritee_releases_total", "Secret releases", outcome="denied")
        if stored is None:
            raise NotFoundError(f"no secret named {name!r}", code="secret_unknown")
        if any(r.code == "secret_tampered" for r in reasons):
            err = VerificationError(
                f"secret {name!r} is damaged at rest and was not released", code="secret_tampered"
            )
        else:
            err = VerificationError(
                "release denied: " + "; ".join(r.message for r in reasons), code="release_denied"
            )
        err.reasons = [r.to_json() for r in reasons]  # type: ignore[attr-defined]
        raise err
    ctx.metrics.inc("veritee_releases_total", "Secret releases", outcome="released")
    return value, stored.version


@release_router.post("/v1/secrets/{name:path}/release", summary="Attested release, encrypted to your key")
async def release(name: str, body: ReleaseRequest, request: Request) -> JSONResponse:
    validate_name(name)
    ctx = _ctx(request)
    nonce = decode_hex(body.nonce, "nonce")
    recipient = parse_recipient(body.public_key)
    data = _b64(body.evidence, "evidence", ctx.settings.max_body_bytes)
    policy = await ctx.current_policy()
    appraisal = ctx.appraise(
        data, at=ctx.now(), format=body.format, nonce=nonce, spki=recipient.spki,
        policy=policy, use_active_policy=False,
    )
    value, version = await ctx.run_db(
        release_secret,
        ctx,
        kek_for(request),
        name=name,
        version=body.version,
        nonce=nonce,
        nonce_purpose="attest",
        claims=appraisal.claims,
        accepted=appraisal.decision.accepted,
        appraisal_reasons=appraisal.decision.reasons,
        audit=appraisal.audit_details()
        | {"via": "release", "recipient_key_sha256": hashlib.sha256(recipient.spki).hexdigest()},
    )
    return JSONResponse(seal_envelope(recipient, value.reveal(), name=name, version=version, nonce=nonce))


def _admitted_claims(
    ctx: ServiceContext, pem: str, now: dt.datetime
) -> tuple[dict[str, Any], AdmissionInfo]:
    """Check an admission certificate of this domain; return the claims it certifies.

    The issuer signature is checked once per distinct certificate (and CA); validity at
    ``now`` is checked on every call.
    """
    claims, info = _verified_admission(pem, ctx.domain.ca_certificate)
    if not info.is_valid_at(now):
        raise VerificationError("admission certificate is not valid now", code="certificate_expired")
    return dict(claims), info


@functools.lru_cache(maxsize=4096)
def _verified_admission(pem: str, ca: x509.Certificate) -> tuple[dict[str, Any], AdmissionInfo]:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise MalformedError("certificate is not a PEM X.509 certificate", field="certificate") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise VerificationError(
            "certificate is not an admission certificate of this domain", code="certificate_untrusted"
        ) from None
    info = AdmissionInfo.from_certificate(cert)
    claims: dict[str, Any] = {
        "platform": info.platform,
        "measurement": info.measurement,
        "profile": info.profile.value if info.profile is not None else None,
        "admission_serial": format(info.serial_number, "x"),
    }
    return claims, info


@release_router.post(
    "/v1/secrets/{name:path}/release-certified",
    summary="Release to a certified workload: admission certificate + fresh proof of possession",
)
async def release_certified(name: str, body: CertifiedReleaseRequest, request: Request) -> JSONResponse:
    """The workload was appraised when it was certified; here it proves it still holds the
    certified key by signing the fresh nonce, the secret's name and its ephemeral key. The
    release policy is evaluated over the claims the certificate carries."""
    validate_name(name)
    ctx = _ctx(request)
    nonce = decode_hex(body.nonce, "nonce")
    recipient = parse_recipient(body.public_key)
    signature = _b64(body.signature, "signature", 400)
    now = ctx.now()
    claims, info = _admitted_claims(ctx, body.certificate, now)
    reasons: list[Reason] = []
    try:
        info.public_key.verify(
            signature, possession_message(name, nonce, recipient.spki), ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, ValueError):
        reasons.append(Reason("possession_not_proven", "the signature does not prove the certified key"))
    value, version = await ctx.run_db(
        release_secret,
        ctx,
        kek_for(request),
        name=name,
        version=body.version,
        nonce=nonce,
        nonce_purpose="attest",
        claims=claims if not reasons else None,
        accepted=not reasons,
        appraisal_reasons=reasons,
        audit={
            "via": "admission_certificate",
            "certificate_serial": claims["admission_serial"],
            "platform": claims["platform"],
            "measurement": claims["measurement"],
            "recipient_key_sha256": hashlib.sha256(recipient.spki).hexdigest(),
        },
    )
    return JSONResponse(seal_envelope(recipient, value.reveal(), name=name, version=version, nonce=nonce))
